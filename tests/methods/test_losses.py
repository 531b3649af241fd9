"""The loss registry: focal, PDLS and F-PDLS against numbers worked out by hand."""
from __future__ import annotations

from math import log

import pytest
import torch

from methods.losses import LOSSES, build_loss, check_prior

# Three samples, three classes. The logits are log-probabilities, so softmax gives back exactly
#   p1 = (0.5, 0.25, 0.25), label 0;   p2 = (0.2, 0.6, 0.2), label 2;   p3 = (0.1, 0.1, 0.8), label 2.
PROBS = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]], dtype=torch.float64)
LOGITS = PROBS.log()
Y = torch.tensor([0, 2, 2])
# Row k: the label distribution of class k (row 1 is never used: no sample is labelled 1).
D = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.0, 0.5, 0.5]])

# Cross-entropy: -(ln 0.5 + ln 0.2 + ln 0.8) / 3.
CE = (log(2) + log(5) + log(1.25)) / 3
# Focal, gamma 2: the (1 - p_y)^2 factors are 0.25, 0.64, 0.04.
FOCAL = (0.25 * log(2) + 0.64 * log(5) + 0.04 * log(1.25)) / 3
# PDLS, alpha 0.8: targets 0.8 onehot + 0.2 D[y]:
#   sample 1: (0.96, 0.02, 0.02); samples 2 and 3: (0, 0.1, 0.9).
PDLS = (0.96 * log(2) + 0.02 * log(4) + 0.02 * log(4)
        + 0.1 * log(1 / 0.6) + 0.9 * log(5)
        + 0.1 * log(10) + 0.9 * log(1.25)) / 3
# F-PDLS, alpha 0.8, gamma 2: each PDLS term times (1 - p_c)^2:
#   sample 1: 0.25, 0.5625, 0.5625;  sample 2: -, 0.16, 0.64;  sample 3: -, 0.81, 0.04.
FPDLS = (0.96 * 0.25 * log(2) + 0.02 * 0.5625 * log(4) * 2
         + 0.1 * 0.16 * log(1 / 0.6) + 0.9 * 0.64 * log(5)
         + 0.1 * 0.81 * log(10) + 0.9 * 0.04 * log(1.25)) / 3


def _value(name: str, **kw) -> float:
    return build_loss(name, **kw)(LOGITS, Y).item()


def test_hand_computed_values() -> None:
    assert CE == pytest.approx(0.841910, abs=1e-6)  # the arithmetic above, once more
    assert _value("ce") == pytest.approx(CE, rel=1e-6)
    assert _value("focal", gamma=2.0) == pytest.approx(FOCAL, rel=1e-6)
    assert _value("pdls", alpha=0.8, prior=D) == pytest.approx(PDLS, rel=1e-6)
    assert _value("fpdls", alpha=0.8, gamma=2.0, prior=D) == pytest.approx(FPDLS, rel=1e-6)
    assert FOCAL < CE and FPDLS < PDLS  # the focal factor only ever shrinks each term


def test_defaults_are_the_public_codes() -> None:
    assert _value("fpdls", prior=D) == pytest.approx(FPDLS, rel=1e-6)  # alpha 0.8, gamma 2
    # PDLS: alpha 0.5 (LabelSmoothingLossDis), not F-PDLS's 0.8
    assert _value("pdls", prior=D) == pytest.approx(_value("pdls", alpha=0.5, prior=D), rel=1e-6)
    assert _value("pdls", prior=D) != pytest.approx(PDLS, rel=1e-3)
    assert _value("focal") == pytest.approx(FOCAL, rel=1e-6)


def test_special_cases() -> None:
    logits, y = torch.randn(16, 8), torch.randint(0, 8, (16,))
    prior = torch.softmax(torch.randn(8, 8), 1)
    fpdls0 = build_loss("fpdls", alpha=0.7, gamma=0.0, prior=prior)(logits, y)
    pdls = build_loss("pdls", alpha=0.7, prior=prior)(logits, y)
    assert fpdls0.item() == pytest.approx(pdls.item(), rel=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, y)
    assert build_loss("pdls", alpha=1.0, prior=prior)(logits, y).item() == pytest.approx(ce.item(), rel=1e-6)
    assert build_loss("focal", gamma=0.0)(logits, y).item() == pytest.approx(ce.item(), rel=1e-6)


def test_gradients_flow_and_prior_moves_with_module() -> None:
    logits = LOGITS.float().clone().requires_grad_(True)
    loss_fn = build_loss("fpdls", prior=D)
    loss_fn(logits, Y).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert "prior" not in loss_fn.state_dict()  # data, not a learned parameter: stays out of checkpoints


@pytest.mark.parametrize("kw, match", [
    ({"alpha": 1.5, "prior": D}, r"alpha=1.5 .*\[0, 1\]"),
    ({"gamma": -1, "prior": D}, r"gamma=-1 .*>= 0"),
    ({"alpha": 0.8}, "prior is required"),
    ({"prior": torch.ones(3, 3)}, r"rows \[0, 1, 2\] sum to"),
    ({"prior": torch.full((2, 3), 0.5)}, r"square .*\[2, 3\]"),
    ({"prior": -D}, ">= 0"),
    ({"beta": 1.0, "prior": D}, r"unknown keyword .*'beta'.*alpha, gamma, prior"),
])
def test_bad_arguments_are_clear(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        build_loss("fpdls", **kw)


def test_unknown_loss_and_class_count_mismatch() -> None:
    with pytest.raises(ValueError, match="allowed values: .*fpdls"):
        build_loss("fpdsl")
    with pytest.raises(ValueError, match="8 classes"):
        build_loss("pdls", prior=D)(torch.randn(2, 8), torch.tensor([0, 1]))
    assert {"ce", "label_smoothing", "focal", "pdls", "fpdls"} <= set(LOSSES)


def test_check_prior_accepts_lists() -> None:
    d = check_prior([[0.5, 0.5], [0.25, 0.75]])
    assert d.dtype == torch.float32 and d.shape == (2, 2)
