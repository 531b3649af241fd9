"""Cross-dataset statistics: one row per (table, row, trained on, tested on), the seed-level
mean and t-CI of the accuracy and of the accuracy over the shared classes.

Reads the collected frame only: its evaluation rows (``kind == "eval"``, see
:mod:`harness.report.collect`) and, as the matrix's diagonal, the in-domain cells of the same
tables (trained and tested on one column; every class is shared there).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.stats.inference import CONFIDENCE, summarise

CROSS_COLUMNS = ["table_id", "row", "row_index", "trained_on", "tested_on", "trained_label", "tested_label",
                 "in_domain", "n", "mean", "ci_low", "ci_high", "shared_n", "shared_mean", "shared_ci_low",
                 "shared_ci_high", "shared_classes", "target_only_classes", "paper_value", "synthetic",
                 "n_failed", "n_missing", "n_stale"]


def cross_dataset_stats(frame: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """The train x test cells of every table that has evaluation rows (:data:`CROSS_COLUMNS`).

    ``n``/``mean``/``ci_*``: over the ok seeds, as :func:`harness.stats.cell_stats` summarises a
    cell; ``shared_*``: the same over the shared-class accuracy (equal to the accuracy where the
    target has no class the model lacks, and in domain). ``synthetic``: a result comes from
    synthetic stand-in data (the training data's or the target's).
    """
    if frame.empty or "kind" not in frame:
        return pd.DataFrame(columns=CROSS_COLUMNS)
    evals = frame[frame["kind"] == "eval"]
    tables = set(evals["table_id"])
    domain = frame[frame["table_id"].isin(tables) & (frame["kind"] != "eval")
                   & ~frame["reference"].fillna(False).astype(bool)]
    domain = domain.assign(kind="cell", trained_on=domain["dataset"], tested_on=domain["dataset"],
                           trained_label=domain["dataset_label"], tested_label=domain["dataset_label"],
                           shared_accuracy=domain["accuracy"], shared_classes=None, target_only_classes="")
    records = []
    keys = ["table_id", "row", "trained_on", "tested_on"]
    for (tid, row, trained, tested), g in pd.concat([domain, evals]).groupby(keys, sort=False):
        ok = g[(g["status"] == "ok") & np.isfinite(pd.to_numeric(g["accuracy"], errors="coerce"))]
        acc = summarise(ok["accuracy"].to_numpy(float), confidence)
        shared = summarise(pd.to_numeric(ok["shared_accuracy"], errors="coerce").to_numpy(float), confidence)
        done = g[g["status"].isin(["ok", "stale"])]
        records.append({
            "table_id": tid, "row": row, "row_index": int(g["row_index"].iloc[0]),
            "trained_on": trained, "tested_on": tested,
            "trained_label": g["trained_label"].iloc[0], "tested_label": g["tested_label"].iloc[0],
            "in_domain": trained == tested, "n": acc.n, "mean": acc.mean, "ci_low": acc.ci_low, "ci_high": acc.ci_high,
            "shared_n": shared.n, "shared_mean": shared.mean, "shared_ci_low": shared.ci_low,
            "shared_ci_high": shared.ci_high,
            "shared_classes": next((s for s in ok["shared_classes"] if isinstance(s, str)), None),
            "target_only_classes": next((s for s in ok["target_only_classes"] if isinstance(s, str)), ""),
            "paper_value": float(pd.to_numeric(g["paper_value"], errors="coerce").iloc[0]),
            "synthetic": bool(done["synthetic"].eq(True).any()),
            "n_failed": int((g["status"] == "failed").sum()), "n_missing": int((g["status"] == "missing").sum()),
            "n_stale": int((g["status"] == "stale").sum()),
        })
    return pd.DataFrame.from_records(records, columns=CROSS_COLUMNS)
