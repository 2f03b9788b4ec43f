"""ActorEnsemble and Critic: shapes, independence of the actors, initialisation, split first
layer, hand-written backward passes against autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradasym.algos.ccm_madrl.networks import ActorEnsemble, Critic, soft_update_

N, S, A = 5, 7, 3


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def plain_actor(ens: ActorEnsemble, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Actor i evaluated the plain way from its slices of the stacked parameters."""
    h = x
    for j in range(ens.n_layers):
        h = F.linear(h, ens.weight(j)[i].t(), ens.bias(j)[i])
        if j < ens.n_layers - 1:
            h = torch.relu(h) if ens.hidden_activation == "relu" else h
    return torch.tanh(h), h


def test_actor_shapes_and_views():
    ens = ActorEnsemble(N, S, A, (64, 32), generator=gen())
    assert ens.flat.shape == (N, 7 * 64 + 64 + 64 * 32 + 32 + 32 * 3 + 3)
    assert ens.weight(0).shape == (N, 7, 64) and ens.bias(0).shape == (N, 64)
    assert ens.weight(2).shape == (N, 32, 3) and ens.bias(2).shape == (N, 3)
    # views share storage with the flat parameter
    assert ens.weight(1).data_ptr() == ens.flat[:, 7 * 64 + 64].data_ptr()
    x = torch.randn(N, 11, S)
    a, z, hidden = ens.forward_with_preact(x)
    assert a.shape == (N, 11, A) and z.shape == (N, 11, A)
    assert [h.shape for h in hidden] == [(N, 11, 64), (N, 11, 32)]
    torch.testing.assert_close(a, torch.tanh(z))
    a1 = ens(x[:, 0])  # one state per agent
    assert a1.shape == (N, A)
    torch.testing.assert_close(a1, a[:, 0])
    assert set(ens.layer_views()) == {"l0.weight", "l0.bias", "l1.weight", "l1.bias", "l2.weight", "l2.bias"}


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_actors_are_independent_networks(activation):
    ens = ActorEnsemble(N, S, A, (16, 8), hidden_activation=activation, generator=gen(1), dtype=torch.float64)
    x = torch.randn(N, 9, S, dtype=torch.float64) * 10
    a, z, _ = ens.forward_with_preact(x)
    for i in range(N):
        a_i, z_i = plain_actor(ens, i, x[i])
        torch.testing.assert_close(a[i], a_i)
        torch.testing.assert_close(z[i], z_i)
        fa, fz = ens.forward_agent(i, x[i])
        torch.testing.assert_close(fa, a_i)
        torch.testing.assert_close(fz, z_i)
    # changing actor 2's parameters changes nothing else
    with torch.no_grad():
        ens.flat[2] += 1.0
    a2 = ens(x)
    torch.testing.assert_close(a2[[0, 1, 3, 4]], a[[0, 1, 3, 4]], rtol=0, atol=0)
    assert not torch.allclose(a2[2], a[2])


def test_actor_init_matches_nn_linear_default():
    ens = ActorEnsemble(N, S, A, (64, 32), output_init=3e-3, generator=gen(7))
    g = gen(7)
    for i in range(N):
        for j, (fan_in, fan_out) in enumerate([(7, 64), (64, 32), (32, 3)]):
            w = torch.empty(fan_out, fan_in)
            b = torch.empty(fan_out)
            if j < 2:  # exactly nn.Linear.reset_parameters with this generator
                nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(b, -bound, bound, generator=g)
                assert float(w.abs().max()) <= bound
            else:
                nn.init.uniform_(w, -3e-3, 3e-3, generator=g)
                nn.init.uniform_(b, -3e-3, 3e-3, generator=g)
            torch.testing.assert_close(ens.weight(j)[i], w.t(), rtol=0, atol=0)
            torch.testing.assert_close(ens.bias(j)[i], b, rtol=0, atol=0)
    # the actors are not copies of each other
    assert not torch.equal(ens.flat[0], ens.flat[1])


def test_critic_init_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    critic = Critic(N, S, A, (512, 128), output_init=3e-3, generator=gen(3))
    ActorEnsemble(N, S, A, generator=gen(3))
    assert torch.equal(state, torch.random.get_rng_state())
    assert critic.input_dim == N * 7 + N * 3 + 7 + 3
    w0 = critic.layers[0].weight.detach()
    bound = 1 / math.sqrt(critic.input_dim)
    assert float(w0.abs().max()) <= bound and float(w0.abs().max()) > 0.9 * bound
    assert float(critic.layers[-1].weight.detach().abs().max()) <= 3e-3
    assert float(critic.layers[-1].bias.detach().abs().max()) <= 3e-3
    # reproducible from the generator
    again = Critic(N, S, A, (512, 128), generator=gen(3))
    for p, q in zip(critic.parameters(), again.parameters()):
        assert torch.equal(p, q)


def critic64(**kw):
    return Critic(N, S, A, (32, 16), generator=gen(4), dtype=torch.float64, **kw)


def batch64(bsz=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    states = torch.rand(bsz, N, S, generator=g, dtype=torch.float64) * 50
    actions = torch.rand(bsz, N, A, generator=g, dtype=torch.float64) * 2 - 1
    return states, actions


def test_critic_split_first_layer_is_exact_algebra():
    critic = critic64()
    states, actions = batch64()
    bsz = states.shape[0]
    q_all = critic.q_all(states, actions)
    assert q_all.shape == (bsz, N)
    for k in range(N):
        full = critic(critic.full_input(states, actions, torch.full((bsz,), k)))
        torch.testing.assert_close(q_all[:, k], full)
        # the full input really is [joint s, joint a, s_k, a_k]
        x = critic.full_input(states, actions, torch.full((bsz,), k))
        torch.testing.assert_close(x[0], torch.cat([states[0].flatten(), actions[0].flatten(), states[0, k], actions[0, k]]))
    zero = critic(critic.full_input(states, actions, None))
    torch.testing.assert_close(critic.q_zero(states, actions), zero)
    k_index = torch.tensor([0, 3, -1, 4, -1, 1])
    q_rows = critic.q_rows(states, actions, k_index)
    expect = torch.where(k_index >= 0, q_all[torch.arange(bsz), k_index.clamp(min=0)], zero)
    torch.testing.assert_close(q_rows, expect)
    views = critic.first_layer_split()
    assert [v.shape for v in views] == [(32, N * 7), (32, N * 3), (32, 7), (32, 3), (32,)]


def test_critic_rows_mask_and_q_max():
    critic = critic64()
    states, actions = batch64()
    mask = torch.rand(states.shape[0], N, generator=gen(5)) < 0.5
    mask[0] = False
    mask[1] = True
    q_masked = critic.q_all(states, actions, mask)
    q_all = critic.q_all(states, actions)
    torch.testing.assert_close(q_masked[mask], q_all[mask])
    assert torch.isinf(q_masked[~mask]).all() and (q_masked[~mask] < 0).all()
    q_best, k_best = critic.q_max(states, actions, mask)
    assert k_best[0] == -1
    torch.testing.assert_close(q_best[0], critic.q_zero(states, actions)[0])
    for b in range(1, states.shape[0]):
        if mask[b].any():
            torch.testing.assert_close(q_best[b], q_all[b][mask[b]].max())
            assert mask[b, k_best[b]]


def test_critic_split_gradients_match_plain_forward():
    critic = critic64()
    states, actions = batch64()
    b_index = torch.tensor([0, 0, 1, 2, 3, 4, 5])
    k_index = torch.tensor([1, 4, -1, 2, 0, -1, 3])
    q = critic.q_pairs(states, actions, b_index, k_index)
    g_split = torch.autograd.grad(q.square().sum(), list(critic.parameters()))
    x = torch.stack([critic.full_input(states[b:b + 1], actions[b:b + 1], k_index[t:t + 1])[0]
                     for t, b in enumerate(b_index.tolist())])
    q_plain = critic(x)
    g_plain = torch.autograd.grad(q_plain.square().sum(), list(critic.parameters()))
    torch.testing.assert_close(q, q_plain)
    for a, b in zip(g_split, g_plain):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_head_vjp_matches_autograd(activation):
    critic = Critic(N, S, A, (32, 16, 8), hidden_activation=activation, generator=gen(6), dtype=torch.float64)
    pre = torch.randn(9, 32, dtype=torch.float64, requires_grad=True)
    grad_q = torch.randn(9, dtype=torch.float64)
    q, g = critic.head_vjp(pre.detach(), grad_q)
    q_ref = critic.head(pre)
    (g_ref,) = torch.autograd.grad((grad_q * q_ref).sum(), pre)
    torch.testing.assert_close(q, q_ref)
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_backward_agent_matches_autograd(activation):
    ens = ActorEnsemble(N, S, A, (16, 8), hidden_activation=activation, generator=gen(8), dtype=torch.float64)
    x = torch.randn(N, 10, S, dtype=torch.float64) * 5
    a, _, hidden = ens.forward_with_preact(x)
    g_a = torch.randn(10, A, dtype=torch.float64)
    for i in (0, 3):
        row = ens.flat[i].detach().requires_grad_(True)
        a_i, _ = ens.forward_agent(i, x[i], row)
        (g_ref,) = torch.autograd.grad((g_a * a_i).sum(), row)
        g = ens.backward_agent(i, x[i], [h[i] for h in hidden], a[i].detach(), g_a)
        torch.testing.assert_close(g, g_ref)


def test_soft_update():
    a = ActorEnsemble(N, S, A, generator=gen(1))
    b = ActorEnsemble(N, S, A, generator=gen(2))
    old = b.flat.detach().clone()
    soft_update_(b.flat, a.flat, 0.25)
    torch.testing.assert_close(b.flat, 0.75 * old + 0.25 * a.flat)
    soft_update_(b, a, 1.0)
    assert torch.equal(b.flat, a.flat)
    ca, cb = Critic(N, generator=gen(1)), Critic(N, generator=gen(2))
    soft_update_(cb, ca, 1.0)
    for p, q in zip(ca.parameters(), cb.parameters()):
        assert torch.equal(p, q)


def test_uniform_init_statistics():
    """Weights are spread over the whole interval (not, e.g., all zero or normal)."""
    ens = ActorEnsemble(50, S, A, (64, 32), generator=gen(9))
    w = ens.weight(1).detach().flatten().numpy() * math.sqrt(64)  # U(-1, 1) after scaling
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1 / math.sqrt(3)) < 0.01
    assert np.quantile(w, 0.99) > 0.97 and np.quantile(w, 0.01) < -0.97


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_backward_rows_is_backward_agent_per_row(activation):
    """backward_rows: actor i of R ensembles (rows of another ensemble) at once."""
    ens = ActorEnsemble(N, S, A, (16, 8), hidden_activation=activation, generator=gen(8), dtype=torch.float64)
    x = torch.randn(N, 10, S, dtype=torch.float64) * 5
    a, _, hidden = ens.forward_with_preact(x)
    g_a = torch.randn(N, 10, A, dtype=torch.float64)
    g = ens.backward_rows(ens.flat.detach(), x, hidden, a.detach(), g_a)
    for i in range(N):
        torch.testing.assert_close(g[i], ens.backward_agent(i, x[i], [h[i] for h in hidden], a[i].detach(), g_a[i]))
