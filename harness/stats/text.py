"""The definitions of the statistics that the report prints, built from the package's settings."""
from __future__ import annotations

from harness.stats.inference import ALPHA, ASO_ITERATIONS, ASO_TAU, BOOT_SEED, CONFIDENCE, N_BOOT
from harness.stats.power import POWER


def statistics_text(params: dict | None = None) -> list[tuple[str, str]]:
    """The definitions the report prints, as (name, text) pairs, from the package's settings."""
    p = {"alpha": ALPHA, "confidence": CONFIDENCE, "n_boot": N_BOOT, "boot_seed": BOOT_SEED,
         "seed_method": "paired-t", "power": POWER, "aso_iterations": ASO_ITERATIONS, **(params or {})}
    conf = f"{p['confidence']:.0%}"
    seed_name = {
        "paired-t": "paired t-test on the seed-matched accuracy differences (row − baseline, one per seed)",
        "wilcoxon": "Wilcoxon signed-rank test on the seed-matched accuracy differences (it cannot reach "
                    "p < 0.05 with 5 seeds or fewer)",
        "welch": "Welch t-test (unequal variances) on the two sets of per-seed accuracies",
    }[p["seed_method"]]
    aso = (f"Almost stochastic order (Dror et al. 2019, deepsig): ε_min of the row over the baseline on "
           f"per-seed accuracies ({p['aso_iterations']} bootstrap iterations). ε_min < {ASO_TAU} reads "
           f"'the row is almost stochastically better', > {1 - ASO_TAU:.1f} 'worse'. Descriptive; "
           "with 3 seeds it is optimistic.") if p["aso_iterations"] else \
        "Almost stochastic order: not computed (the deepsig package is not installed, or it was switched off)."
    return [
        ("Unit", "The unit of replication is the training run (a seed): the claims of an ablation table are "
                 "about training procedures. One cell = one (table, row, dataset); n = the number of seeds "
                 "whose run finished (status ok); failed, missing and stale seeds are left out and listed "
                 "in the ledger."),
        ("Cell estimate", f"Mean and sample standard deviation (ddof = 1) of test accuracy over the n "
                          f"seeds; {conf} CI = mean ± t(n-1) · sd / √n. With n = 1 there is no CI "
                          "(shown as 'n=1, no CI')."),
        ("Equivalence (reproduced)", "Two one-sided t-tests (TOST) of our mean against the paper's value "
                                     "± the table's margin (spec field 'margin', default 1 point): "
                                     "equivalent at α when the (1 − 2α) t-CI lies inside the band. A wide "
                                     "CI cannot pass it, so more seeds are needed, not fewer."),
        ("Primary test", f"Against the table's baseline row on the same dataset: {seed_name}. It alone "
                         "decides significance, the markers and the verdicts. Needs 2 matched seeds."),
        ("Effect CI", f"A two-level bootstrap of the seed-averaged accuracy difference (points): each of "
                      f"{p['n_boot']} replicates resamples the matched seeds with replacement and, "
                      "independently, the test images with replacement (the same images for every seed, "
                      "row and baseline: all runs are scored on one test set). Interval = observed ± "
                      "t(n−1) · bootstrap SE, since a percentile interval over 3 seeds is far too narrow; "
                      f"{conf}, generator seed {p['boot_seed']}. It counts each run's per-image noise twice, "
                      "so it is conservative (96–100% coverage of a nominal 95% in simulation). Without "
                      "per-sample predictions: the seed-level t-interval of the deltas. With one seed: none."),
        ("McNemar (descriptive)", "Exact McNemar test per seed and pooled over seeds (b = row right & "
                                  "baseline wrong, c = the converse, summed over seeds). It asks whether "
                                  "these trained models differ on this test set, not whether the training "
                                  "procedures differ, and decides nothing."),
        ("Almost stochastic order", aso),
        ("Power and seeds", f"From the SD of the seed-matched deltas (statsmodels TTestPower, two-sided "
                            f"paired t at α = {p['alpha']}): the seeds needed for {p['power']:.0%} power to "
                            "detect the paper's delta (our observed delta where the paper gives none), the "
                            "power the seeds we ran had, and the minimum detectable effect with them. A row "
                            "that is neither significant nor adequately powered is inconclusive."),
        ("Multiple comparisons", "Holm step-down correction over one family per table: every "
                                 "non-baseline row × dataset with a primary p-value."),
        ("Significance", f"α = {p['alpha']}, on the Holm-adjusted primary p: * p < {p['alpha']}, "
                         "** p < 0.01, *** p < 0.001."),
        ("Ranking", "Kendall τ-b between the paper's values and our means over the rows of one "
                    "table and dataset that have both; sign agreement = the fraction of "
                    "non-baseline rows whose delta against the baseline has the paper's sign "
                    "(rows with a paper delta of exactly 0 are left out)."),
        ("Test-set selection", "Every run also records, without using it, the test accuracy of its best "
                               "epoch on the test set (the public APViT, TransFER and MAE code's protocol). "
                               "Per table and dataset the report shows our honest mean beside that, the "
                               "best seed, and the best seed with test-set selection (best of n runs), and "
                               "the inflation of each in points."),
    ]
