"""Prioritised replay: storage, proportional stratified sampling, weights, beta schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradasym.algos.ccm_madrl.replay import PrioritizedReplay
from reference import through_torch_save

N, S, A = 3, 7, 3


def make(capacity=100, seed=0, **kw):
    return PrioritizedReplay(capacity, N, S, A, np.random.default_rng(seed), **kw)


def push(buf, i, err=0.0):
    s = np.full((N, S), float(i))
    buf.push(s, np.full((N, A), i / 1000.0), np.arange(N) % 2, -float(i), s + 0.5, i % 10 == 9, err)


def test_push_and_sample_shapes():
    buf = make()
    for i in range(5):
        push(buf, i, err=1.0)
    assert len(buf) == 5
    batch = buf.sample(8)
    assert batch.states.shape == (8, N, S) and batch.next_states.shape == (8, N, S)
    assert batch.actions.shape == (8, N, A) and batch.x.shape == (8, N)
    assert batch.rewards.shape == (8,) and batch.dones.shape == (8,) and batch.weights.shape == (8,)
    assert batch.indices.shape == (8,)
    for b, j in enumerate(batch.indices):
        assert float(batch.states[b, 0, 0]) == j
        assert float(batch.rewards[b]) == -j
        assert float(batch.dones[b]) == float(j % 10 == 9)
        torch.testing.assert_close(batch.next_states[b], batch.states[b] + 0.5)
    assert batch.states.dtype == torch.float32


def test_ring_buffer_overwrites_oldest():
    buf = make(capacity=5)
    for i in range(7):
        push(buf, i)
    assert len(buf) == 5 and buf.ptr == 2
    assert sorted(float(v) for v in buf.states[:, 0, 0]) == [2, 3, 4, 5, 6]


def test_push_many_equals_pushes_in_order_with_wrap_around():
    one, many = make(capacity=5), make(capacity=5)
    for i in range(3):
        push(one, i, err=float(i))
        push(many, i, err=float(i))
    items = list(range(3, 10))  # 7 more: wraps around and overwrites its own first items
    for i in items:
        push(one, i, err=float(i))
    s = np.stack([np.full((N, S), float(i)) for i in items])
    slots = many.push_many(s, np.stack([np.full((N, A), i / 1000.0) for i in items]),
                           np.stack([np.arange(N) % 2] * len(items)), [-float(i) for i in items], s + 0.5,
                           [i % 10 == 9 for i in items], [float(i) for i in items])
    assert list(slots) == [3, 4, 0, 1, 2, 3, 4]
    assert (many.ptr, many.size) == (one.ptr, one.size) == (0, 5)
    np.testing.assert_array_equal(many.priorities, one.priorities)
    for name in ("states", "actions", "x", "rewards", "next_states", "dones"):
        torch.testing.assert_close(getattr(many, name), getattr(one, name), rtol=0, atol=0)
    assert sorted(float(v) for v in many.states[:, 0, 0]) == [5, 6, 7, 8, 9]


def test_never_samples_an_empty_slot():
    buf = make(capacity=10_000)
    with pytest.raises(ValueError):
        buf.sample(4)
    for i in range(3):
        push(buf, i, err=float(i))
    for _ in range(500):
        idx = buf.sample(64).indices
        assert idx.min() >= 0 and idx.max() < 3


def test_priorities_and_update():
    buf = make()
    for i in range(4):
        push(buf, i, err=float(i))
    np.testing.assert_allclose(buf.priorities[:4], (np.arange(4) + 0.01) ** 0.6)
    buf.update_priorities(np.array([1, 1, 3]), np.array([5.0, 5.0, 0.0]))
    np.testing.assert_allclose(buf.priorities[[1, 3]], [(5.01) ** 0.6, 0.01**0.6])
    with pytest.raises(IndexError):
        buf.update_priorities(np.array([4]), np.array([1.0]))


def test_sampling_is_proportional_and_stratified():
    buf = make(capacity=50, seed=1)
    errs = np.array([0.0, 1.0, 4.0, 9.0, 30.0, 100.0, 0.5, 2.0])
    for i, e in enumerate(errs):
        push(buf, i, err=e)
    p = (errs + 0.01) ** 0.6
    expected = p / p.sum()
    counts = np.zeros(len(errs))
    n_batches, bsz = 2000, 16
    for _ in range(n_batches):
        idx = buf.sample(bsz).indices
        assert np.all(np.diff(idx) >= 0)  # one point per segment, segments in order
        counts += np.bincount(idx, minlength=len(errs))
    freq = counts / counts.sum()
    # stratification makes this much tighter than multinomial noise (~0.003); a uniform
    # sampler would be off by up to 0.14
    np.testing.assert_allclose(freq, expected, atol=0.005)
    chi2 = ((counts - expected * counts.sum()) ** 2 / (expected * counts.sum())).sum()
    assert chi2 < 30  # 7 degrees of freedom


def test_stratified_segments_cover_mass():
    """With equal priorities and B = size, every slot is drawn exactly once."""
    buf = make(capacity=20)
    for i in range(16):
        push(buf, i, err=1.0)
    idx = buf.sample(16).indices
    assert sorted(idx.tolist()) == list(range(16))


def test_importance_weights_and_beta_schedule():
    buf = make()
    errs = [0.0, 3.0, 10.0, 0.2]
    for i, e in enumerate(errs):
        push(buf, i, err=e)
    batch = buf.sample(8)
    assert buf.beta == pytest.approx(0.401)  # incremented before the first use
    p = buf.priorities[:4]
    prob = (p[batch.indices] + 1e-9) / (p.sum() + 1e-9)
    w = (4 * prob) ** (-0.401)
    np.testing.assert_allclose(batch.weights.numpy(), w / w.max(), rtol=1e-6)
    assert float(batch.weights.max()) == 1.0
    for _ in range(700):
        buf.sample(2)
    assert buf.beta == 1.0


def test_state_dict_round_trip():
    buf = make(capacity=30, seed=4)
    for i in range(12):
        push(buf, i, err=float(i % 5))
    buf.sample(4)
    sd = buf.state_dict()
    sd = through_torch_save(sd)
    other = make(capacity=30, seed=99)
    other.load_state_dict(sd)
    a, b = buf.sample(8), other.sample(8)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert torch.equal(a.weights, b.weights) and torch.equal(a.states, b.states)
    push(buf, 50)
    push(other, 50)
    assert buf.ptr == other.ptr and len(buf) == len(other)
    with pytest.raises(ValueError):
        make(capacity=31).load_state_dict(sd)
