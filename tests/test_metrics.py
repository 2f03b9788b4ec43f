"""The plasticity metrics (gradasym.metrics) against their definitions on small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradasym.metrics import (distance_from_init, dormant_fraction, dormant_mask, dormant_scores, effective_rank,
                              param_norm, stable_rank)


def test_dormant_scores_follow_sokar_definition():
    # 3 units, batch of 2: E|h| = (1, 0, 2) -> layer mean 1 -> scores (1, 0, 2)
    h = torch.tensor([[1.0, 0.0, -2.0], [-1.0, 0.0, 2.0]])
    s = dormant_scores(h)
    np.testing.assert_allclose(s.numpy(), [1.0 / (1 + 1e-9), 0.0, 2.0 / (1 + 1e-9)], rtol=0, atol=1e-15)
    assert dormant_mask(h, 0.0).tolist() == [False, True, False]
    assert dormant_fraction(h, 0.0).item() == pytest.approx(1 / 3)
    # tau is inclusive: a unit whose score equals tau is dormant
    h2 = torch.tensor([[1.0, 1.0, 1.0, 0.1]], dtype=torch.float64)  # unit 3 scores 0.1 / 0.775
    tau = dormant_scores(h2)[3].item()
    assert tau == pytest.approx(0.1 / 0.775, rel=1e-8)
    assert dormant_mask(h2, tau)[3] and not dormant_mask(h2, tau * (1 - 1e-9))[3]


def test_dormant_fraction_vectorised_over_agents_and_taus():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(4, 16, 8, generator=g).relu()  # (N, B, H)
    h[1, :, :3] = 0.0  # agent 1: 3 of 8 units never fire
    h[2, :, 0] *= 0.01  # agent 2: one nearly silent unit
    fr = dormant_fraction(h, [0.0, 0.025, 0.1])
    assert fr.shape == (4, 3)
    for i in range(4):  # equal to one call per agent and per tau
        for t, tau in enumerate([0.0, 0.025, 0.1]):
            assert fr[i, t].item() == dormant_fraction(h[i], tau).item()
    assert fr[1, 0].item() == pytest.approx(3 / 8)
    assert fr[2, 0].item() == 0.0 and fr[2, 1].item() == pytest.approx(1 / 8)
    # a silent layer: every unit dormant
    assert dormant_fraction(torch.zeros(5, 3), 0.0).item() == 1.0


def test_dormant_rejects_bad_input():
    with pytest.raises(ValueError, match="batch, units"):
        dormant_fraction(torch.ones(3))
    with pytest.raises(ValueError, match="tau"):
        dormant_fraction(torch.ones(2, 3), -0.1)
    with pytest.raises(TypeError, match="floating"):
        dormant_fraction(torch.ones(2, 3, dtype=torch.int64))


def test_effective_rank_definition_and_extremes():
    # singular values (3, 1): p = (0.75, 0.25)
    f = torch.diag(torch.tensor([3.0, 1.0]))
    p = np.array([0.75, 0.25])
    assert effective_rank(f).item() == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-12)
    # rank one -> 1; isotropic d columns -> d; zero -> 0
    u = torch.randn(10, 1, generator=torch.Generator().manual_seed(1))
    assert effective_rank(u @ torch.ones(1, 5)).item() == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(torch.eye(6)).item() == pytest.approx(6.0, rel=1e-12)
    assert effective_rank(torch.zeros(4, 3)).item() == 0.0


def test_stable_rank_definition():
    # singular values (10, 5, 1): sum 16; 0.99 * 16 = 15.84 -> needs all 3; delta 0.1 -> 14.4 -> 2
    f = torch.diag(torch.tensor([10.0, 5.0, 1.0]))
    assert stable_rank(f, 0.01).item() == 3
    assert stable_rank(f, 0.1).item() == 2
    assert stable_rank(f, 0.5).item() == 1
    assert stable_rank(torch.zeros(3, 3)).item() == 0
    with pytest.raises(ValueError, match="delta"):
        stable_rank(f, 1.0)


def test_ranks_batched_equal_per_matrix():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(3, 12, 5, generator=g)
    f[1, :, 2:] = 0.0  # agent 1 has rank 2
    er, sr = effective_rank(f), stable_rank(f)
    assert er.shape == sr.shape == (3,)
    for i in range(3):
        assert er[i].item() == pytest.approx(effective_rank(f[i]).item(), rel=1e-12)
        assert sr[i].item() == stable_rank(f[i]).item()
    assert er[1].item() <= 2.0 + 1e-9 and sr[1].item() <= 2


def test_param_norm_and_distance():
    w = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # agent rows
    b = torch.tensor([[0.0], [2.0]])
    assert param_norm([w, b]).item() == pytest.approx(math.sqrt(9 + 16 + 1 + 4))
    np.testing.assert_allclose(param_norm([w, b], lead=1).numpy(), [5.0, math.sqrt(5.0)])
    w0, b0 = w.clone(), b.clone()
    w0[0, 0] -= 1.0
    b0[1, 0] += 2.0
    np.testing.assert_allclose(distance_from_init([w, b], [w0, b0], lead=1).numpy(), [1.0, 2.0])
    assert distance_from_init([w, b], [w, b]).item() == 0.0
    with pytest.raises(ValueError, match="different structures"):
        distance_from_init([w, b], [w])


def test_ranks_are_stable_under_rounding_level_changes():
    """A rank-deficient feature matrix (dead units: zero columns) changed at the 1e-12 level keeps its
    ranks to ~1e-12: two trainers that round differently must report the same effective rank. (Singular
    values from the Gram matrix's eigenvalues fail this: their noise floor, ~1e-8 of the largest, enters
    the entropy at ~1e-7.)"""
    g = torch.Generator().manual_seed(7)
    f = torch.randn(4, 64, 32, generator=g, dtype=torch.float64).relu()
    f[..., 5:] = 0.0  # 27 of 32 units silent
    f = f @ torch.linalg.qr(torch.randn(32, 32, generator=g, dtype=torch.float64))[0]  # no exact zero columns
    noisy = f * (1 + 1e-12 * torch.randn(f.shape, generator=g, dtype=torch.float64))
    torch.testing.assert_close(effective_rank(noisy), effective_rank(f), rtol=1e-9, atol=0)  # Gram: 7.6e-8
    assert torch.equal(stable_rank(noisy), stable_rank(f))
