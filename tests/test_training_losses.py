"""DARD and the baselines' losses against values computed by hand (math module only)."""

from __future__ import annotations

import math

import pytest
import torch

from dard_plugin.losses import ard_loss, dard_loss, distillation_kl, rslad_loss, sat_loss

S_NAT = [[1.0, 2.0, 0.0], [0.5, -1.0, 2.0]]
S_ADV = [[0.0, 1.0, 0.5], [1.5, 0.0, 0.0]]
T_NAT = [[0.5, 0.0, 1.0], [2.0, 1.0, -1.0]]
T_ADV = [[1.0, 1.0, 0.0], [0.0, 0.5, 0.5]]
LABELS = [1, 2]


def softmax(row: list[float], tau: float = 1.0) -> list[float]:
    exps = [math.exp(v / tau) for v in row]
    return [e / sum(exps) for e in exps]


def kl(
    teacher: list[list[float]], student: list[list[float]], tau: float = 1.0, legacy: bool = False
) -> float:
    total = 0.0
    for t_row, s_row in zip(teacher, student, strict=True):
        q = softmax(softmax(t_row) if legacy else t_row, tau)
        p = softmax(s_row, tau)
        total += sum(qi * math.log(qi / pi) for qi, pi in zip(q, p, strict=True))
    return total / len(teacher)  # batchmean


def ce(logits: list[list[float]], labels: list[int]) -> float:
    return sum(-math.log(softmax(row)[y]) for row, y in zip(logits, labels, strict=True)) / len(
        labels
    )


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize(
    ("alpha", "tau", "w"), [(0.7, 3.0, 0.5), (0.3, 1.5, 0.75), (1.0, 2.0, 1.0)]
)
def test_dard_loss(alpha: float, tau: float, w: float, legacy: bool) -> None:
    natural = alpha * tau**2 * kl(T_NAT, S_NAT, tau, legacy) + (1 - alpha) * ce(S_NAT, LABELS)
    adversarial = alpha * tau**2 * kl(T_ADV, S_ADV, tau, legacy) + (1 - alpha) * ce(S_ADV, LABELS)
    expected = (1 - w) * natural + w * adversarial
    got = dard_loss(
        t(S_NAT),
        t(S_ADV),
        t(T_NAT),
        t(T_ADV),
        torch.tensor(LABELS),
        alpha=alpha,
        temperature=tau,
        adv_weight=w,
        legacy_teacher_softmax=legacy,
    )
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_legacy_softmax_flattens_the_targets() -> None:
    sharp = t([[8.0, 0.0, 0.0]])
    honest = torch.softmax(sharp / 3.0, dim=1)
    legacy = torch.softmax(torch.softmax(sharp, dim=1) / 3.0, dim=1)
    assert honest.max() > 0.85 and legacy.max() < 0.45  # near uniform: the scripts' defect
    assert distillation_kl(sharp, sharp, temperature=3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_ard_rslad_sat_losses() -> None:
    alpha, tau = 0.9, 4.0
    expected_ard = alpha * tau**2 * kl(T_NAT, S_ADV, tau) + (1 - alpha) * ce(S_NAT, LABELS)
    got = ard_loss(t(S_NAT), t(S_ADV), t(T_NAT), torch.tensor(LABELS), alpha=alpha, temperature=tau)
    assert got.item() == pytest.approx(expected_ard, rel=1e-6)
    expected_rslad = 5 / 6 * kl(T_NAT, S_ADV) + 1 / 6 * kl(T_NAT, S_NAT)
    assert rslad_loss(t(S_NAT), t(S_ADV), t(T_NAT)).item() == pytest.approx(
        expected_rslad, rel=1e-6
    )
    assert sat_loss(t(S_ADV), torch.tensor(LABELS)).item() == pytest.approx(ce(S_ADV, LABELS))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"temperature": 0.0}, "temperature"),
        ({"adv_weight": -0.1}, "adv_weight"),
    ],
)
def test_bad_weights(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        dard_loss(t(S_NAT), t(S_ADV), t(T_NAT), t(T_ADV), torch.tensor(LABELS), **kwargs)
