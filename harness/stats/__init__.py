"""Statistics over the collected frame: CIs, seed-level tests against the baseline, power, verdicts.

The method (unit of replication, primary test, bootstrap, equivalence, power, Holm, ranking) is
described in ``docs/statistics.md``; the report prints its short form (:func:`statistics_text`).

* ``inference``: the statistical tests and intervals, pure functions over arrays, and the default
  settings (alpha, confidence, bootstrap, margin).
* ``power``: power analysis and seed budgeting (seeds needed, achieved power, minimum detectable
  effect, the ``--until-ci`` round rule).
* ``verdicts``: the verdict definitions, the rule that assigns them, the significance markers.
* ``frame``: functions over the pandas results frame, up to :func:`analyse`.
* ``text``: the definitions the report prints.
* ``cross``: the train x test matrix of cross-dataset evaluations.

Dependencies run one way: inference <- power <- verdicts <- frame; text reads inference and power.
"""
from harness.stats.cross import CROSS_COLUMNS, cross_dataset_stats
from harness.stats.frame import (
    CELL_COLUMNS,
    CELL_KEYS,
    COMPARISON_COLUMNS,
    SELECTION_COLUMNS,
    SUMMARY_COLUMNS,
    Analysis,
    analyse,
    cell_stats,
    compare_to_baseline,
    selection_cost,
    table_summary,
)
from harness.stats.inference import (
    ALPHA,
    ASO_ITERATIONS,
    ASO_TAU,
    BOOT_SEED,
    CONFIDENCE,
    MARGIN,
    N_BOOT,
    SEED_METHODS,
    BootstrapCI,
    McNemar,
    Summary,
    aso_available,
    aso_epsilon,
    holm,
    kendall_tau,
    mcnemar_pooled,
    seed_test,
    summarise,
    tost_pvalue,
    two_level_bootstrap,
)
from harness.stats.power import (
    POWER,
    achieved_power,
    format_seeds,
    min_detectable_effect,
    next_seed_counts,
    seeds_needed,
    tost_seeds_needed,
)
from harness.stats.text import statistics_text
from harness.stats.verdicts import (
    DIRECTION_HOLDS,
    DIRECTION_REVERSED,
    INCONCLUSIVE,
    NO_RESULT,
    NOT_COMPARABLE,
    NOT_REPRODUCED,
    POSITIVE_VERDICTS,
    REFERENCE,
    REPRODUCED,
    VERDICTS,
    significance_marker,
    verdict,
)

__all__ = [
    # inference
    "ALPHA", "ASO_ITERATIONS", "ASO_TAU", "BOOT_SEED", "CONFIDENCE", "MARGIN", "N_BOOT", "SEED_METHODS",
    "BootstrapCI", "McNemar", "Summary", "aso_available", "aso_epsilon", "holm", "kendall_tau",
    "mcnemar_pooled", "seed_test", "summarise", "tost_pvalue", "two_level_bootstrap",
    # power
    "POWER", "achieved_power", "format_seeds", "min_detectable_effect", "next_seed_counts", "seeds_needed",
    "tost_seeds_needed",
    # verdicts
    "DIRECTION_HOLDS", "DIRECTION_REVERSED", "INCONCLUSIVE", "NO_RESULT", "NOT_COMPARABLE", "NOT_REPRODUCED",
    "POSITIVE_VERDICTS", "REFERENCE", "REPRODUCED", "VERDICTS", "significance_marker", "verdict",
    # frame
    "CELL_COLUMNS", "CELL_KEYS", "COMPARISON_COLUMNS", "SELECTION_COLUMNS", "SUMMARY_COLUMNS", "Analysis",
    "analyse", "cell_stats", "compare_to_baseline", "selection_cost", "table_summary",
    # text
    "statistics_text",
    # cross
    "CROSS_COLUMNS", "cross_dataset_stats",
]
