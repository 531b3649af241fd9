"""``python -m harness status``: what is done, running, failed or stale, and the failure ledger."""
from __future__ import annotations

import argparse
import json

import pandas as pd

from harness.report.collect import collect_tables
from harness.commands.common import add_results_flag, add_run_config_flags, run_configs
from harness.specs import list_specs
from harness.store import Store


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``status`` command."""
    p = sub.add_parser("status", help="cells done / running / failed / stale, and the failure ledger")
    p.add_argument("--table", action="append", help="table id(s); default: all")
    p.add_argument("--json", action="store_true", help="one JSON object")
    add_results_flag(p)
    add_run_config_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Summarise the store for the given tables."""
    store = Store(args.results, create=False)
    tables = args.table or list_specs()
    df = collect_tables(tables, args.results, configs=run_configs(args.results, tables, args))
    df = df[df["status"] != "reference"]
    evals = df["kind"].eq("eval") if "kind" in df else pd.Series(False, index=df.index)
    evaluations = {t: g["status"].value_counts().to_dict() for t, g in df[evals].groupby("table_id")}
    df = df[~evals]  # cross-dataset evaluations are counted on their own line, not as cells
    pending = df.loc[df["status"].isin(["missing", "failed"]), "cell_id"].dropna().unique()
    claims = {cid: store.claim_state(cid) for cid in pending}
    claims = {cid: c for cid, c in claims.items() if c is not None and c["state"] != "dead"}
    running = {cid: store.progress(cid) for cid in claims}
    counts = {t: g["status"].value_counts().to_dict() for t, g in df.groupby("table_id")}
    ledger = [f for f in store.ledger() if f["cell_id"] in set(df["cell_id"].dropna())]
    if args.json:
        print(json.dumps({"counts": counts, "evaluations": evaluations, "running": running, "claims": claims,
                          "failures": ledger}, default=str))
        return 0
    for t, c in counts.items():
        line = ", ".join(f"{n} {k}" for k, n in sorted(c.items()))
        print(f"{t}: {line}")
        if t in evaluations:
            print(f"  cross-dataset evaluations: {', '.join(f'{n} {k}' for k, n in sorted(evaluations[t].items()))}")
    training = {cid: p for cid, p in running.items() if p}
    for cid, prog in training.items():
        c = claims[cid]
        note = (f"no heartbeat for {_age(c['heartbeat_age_s'])}: stopped?" if c["stalled"] else
                f"heartbeat {_age(c['heartbeat_age_s'])} ago" if c["heartbeat_age_s"] is not None else "")
        print(f"  training {cid}: epoch {prog['epoch'] + 1}/{prog['epochs']}" + (f" ({note})" if note else ""))
    for cid, c in claims.items():
        if c["state"] == "unverifiable" and cid not in training:
            o = c["owner"]
            print(f"  claimed {cid}: by pid {o.get('pid')} on host {o.get('host')} for {_age(c['age_s'])}; this host "
                  "cannot check it (reproduce --break-stale-claims takes such claims over)")
    queued = [cid for cid, c in claims.items() if cid not in training and c["state"] != "unverifiable"]
    if queued:
        print(f"  queued: {len(queued)} cells")
    if ledger:
        print("failure ledger:")
        for f in ledger:
            print(f"  {f['cell_id']}  {f['error_type']}: {f['message'][:120]}  (attempts {f['attempts']}, "
                  f"log {f['log_path']})")
    return 0


def _age(seconds: float | None) -> str:
    """``42 s``, ``12 min``, ``3 h 5 min``."""
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"
