"""methods.interface: the recipe's one-line summary names its lr schedule."""
from __future__ import annotations

from dataclasses import replace

import pytest

from methods.interface import Recipe


@pytest.mark.parametrize("fields, expected", [
    ({"schedule": "cosine", "warmup_epochs": 1}, "lr 0.001 (cosine, warm-up 1 epoch),"),
    ({"schedule": "step", "milestones": (0.15, 0.3), "lr_gamma": 0.25}, "lr 0.001 (x0.25 at 0.15, 0.3 of training),"),
    ({"schedule": "step", "milestones": ()}, "(x0.1 at 1/3, 2/3 of training)"),
    ({"schedule": "plateau", "plateau_epochs": 30}, "(x0.1 after 30 epochs without a better validation accuracy)"),
    ({"schedule": "constant", "warmup_epochs": 5}, "(constant, warm-up 5 epochs)"),
])
def test_summary_states_the_schedule(fields, expected):
    assert expected in replace(Recipe(lr=1e-3), **fields).summary()
