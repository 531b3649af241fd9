"""The cross-dataset matrix of a table page: per row (method), trained on (rows) x tested on (columns).

Built from the collected frame through :func:`harness.stats.cross_dataset_stats`, with the verdict
of each pair from the analysis (an evaluation is one more column of the table to the statistics:
``dataset`` ``"<trained>→<tested>"``). The diagonal is the in-domain result of the table itself.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from harness import stats
from harness.report.render import SYNTHETIC_MARK

CROSS = "→"
LEGEND = ("Rows: the dataset the model trained on; columns: the test set it was evaluated on, without "
          "retraining (the diagonal is the in-domain result of the table). Each cell: mean accuracy (%) over "
          "seeds [95% t-CI over seeds]; where the test set has classes the model cannot predict (contempt for "
          "a 7-class model), those images count as errors, and the line below gives the accuracy over the "
          "shared classes only, labelled as such. Paper: the paper's value. "
          f"{SYNTHETIC_MARK} = synthetic stand-in data: absolute values are meaningless.")


def _interval(n: int, mean: float, low: float, high: float, synthetic: bool) -> str:
    mark = SYNTHETIC_MARK if synthetic else ""
    if n == 1 or not math.isfinite(high):
        return f"{mean:.2f}{mark} (n=1, no CI)"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]{mark} (n={n})"


def _cell_html(c: pd.Series | None, verdict: str | None) -> str:
    if c is None:
        return '<td class="na">–</td>'
    if int(c["n"]) == 0:
        state = "failed" if c["n_failed"] else "stale" if c["n_stale"] else "missing"
        return f'<td class="{state}">{state}</td>'
    lines = [escape(_interval(int(c["n"]), c["mean"], c["ci_low"], c["ci_high"], bool(c["synthetic"])))]
    if c["target_only_classes"] and int(c["shared_n"]):
        n_shared = len([x for x in str(c["shared_classes"] or "").split(", ") if x])
        lines.append(escape(f"shared classes ({n_shared}, without {c['target_only_classes']}): "
                            + _interval(int(c["shared_n"]), c["shared_mean"], c["shared_ci_low"],
                                        c["shared_ci_high"], bool(c["synthetic"]))))
    if math.isfinite(c["paper_value"]):
        lines.append(escape(f"paper: {c['paper_value']:.2f}"))
    if verdict:
        lines.append(f'<span class="verdict v-{escape(verdict.replace(" ", "-"))}">{escape(verdict)}</span>')
    kind = "in-domain" if c["in_domain"] else "cross"
    return f'<td class="{kind}">' + "<br>".join(str(x) for x in lines) + "</td>"


def cross_matrices(frame: pd.DataFrame, cells: pd.DataFrame, spec: Any) -> list[dict[str, Any]]:
    """One matrix per row of ``spec`` that has evaluation rows in ``frame``: ``{"row", "html",
    "synthetic"}``; empty when the table evaluates on no other dataset."""
    table = stats.cross_dataset_stats(frame[frame["table_id"] == spec.id]) if "table_id" in frame else None
    if table is None or table.empty:
        return []
    verdicts = {}
    if len(cells) and "verdict" in cells:
        t = cells[cells["table_id"] == spec.id]
        verdicts = {(r.row, r.dataset): r.verdict for r in t.itertuples()}
    out = []
    for row, g in table.sort_values("row_index", kind="stable").groupby("row", sort=False):
        trained = list(dict.fromkeys(c.key for c in spec.datasets if c.key in set(g["trained_on"])))
        tested = list(dict.fromkeys([*(k for k in trained if k in set(g["tested_on"])), *g["tested_on"]]))
        labels = dict(zip(g["tested_on"], g["tested_label"])) | dict(zip(g["trained_on"], g["trained_label"]))
        by = {(r["trained_on"], r["tested_on"]): r for _, r in g.iterrows()}
        head = "".join(f"<th>{escape(labels.get(k, k))}</th>" for k in tested)
        body = []
        for tr in trained:
            tds = []
            for te in tested:
                c = by.get((tr, te))
                key = tr if tr == te else f"{tr}{CROSS}{te}"
                tds.append(_cell_html(c, verdicts.get((row, key)) if c is not None else None))
            body.append(f"<tr><th>{escape(labels.get(tr, tr))}</th>{''.join(tds)}</tr>")
        html = (f'<table class="plain cross-matrix"><thead><tr><th>trained on ↓ / tested on →</th>{head}</tr>'
                f"</thead><tbody>{''.join(body)}</tbody></table>")
        out.append({"row": row, "html": Markup(html), "synthetic": bool(g["synthetic"].any())})
    return out
