"""End to end through a real SLURM cluster (scripts/slurm_local.sh start); skips when none is up."""
from __future__ import annotations

import pytest

from harness.cli import main
from harness.store import Store
from tests.harness.conftest import write_spec
from tests.harness.test_slurm_cluster import _cluster_or_skip

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_table_through_slurm_job_array(harness_env, capsys):
    partition = _cluster_or_skip()
    write_spec(harness_env["tables"], "slurm_tab", [{"label": "base", "set": {"app.k": 196, "atp.r": 1.0}},
                                                    {"label": "apvit", "set": {}}])
    argv = ["reproduce", "--table", "slurm_tab", "--executor", "slurm", "--partition", partition,
            "--timeout-min", "20", "--mem-gb", "2"]
    assert main(argv) == 0
    assert "2 done, 0 cached, 0 failed" in capsys.readouterr().err
    store = Store(harness_env["results"])
    assert all(store.record(c) is not None for c in store.cell_ids())
    assert main(argv) == 0
    assert "0 done, 2 cached" in capsys.readouterr().err
