"""BatchedAdam = one torch.optim.Adam per agent, over stacked parameters."""

from __future__ import annotations

import pytest
import torch

from gradasym.algos.ccm_madrl.optim import BatchedAdam

N = 4
SHAPES = [(N, 5, 3), (N, 3)]


def make(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    stacked = [torch.randn(*s, generator=g, dtype=dtype) for s in SHAPES]
    separate = [[torch.nn.Parameter(p[i].clone()) for p in stacked] for i in range(N)]
    optims = [torch.optim.Adam(ps, lr=1e-2) for ps in separate]
    return stacked, separate, optims, g


def grads_for(g, dtype):
    return [torch.randn(*s, generator=g, dtype=dtype) * 10 for s in SHAPES]


def check(stacked, separate, rtol, atol):
    for i in range(N):
        for p, q in zip(stacked, separate[i]):
            torch.testing.assert_close(p[i], q.detach(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_step_all_matches_separate_adams(dtype, tol):
    stacked, separate, optims, g = make(dtype)
    opt = BatchedAdam(stacked, lr=1e-2)
    for _ in range(25):
        grads = grads_for(g, dtype)
        opt.step_all(grads)
        for i in range(N):
            for q, gr in zip(separate[i], grads):
                q.grad = gr[i].clone()
            optims[i].step()
        check(stacked, separate, tol, tol)
    assert opt.steps == [25] * N


def test_step_agent_moves_only_that_agent():
    """Sequential pattern: each agent steps only in its own pass; the others keep their
    values AND their moments (a shared Adam would move them on momentum)."""
    stacked, separate, optims, g = make(torch.float64)
    opt = BatchedAdam(stacked, lr=1e-2)
    for _ in range(3):  # three updates, each a loop over the agents
        for i in range(N):
            before = [p.clone() for p in stacked]
            grads = grads_for(g, torch.float64)
            opt.step_agent(i, [gr[i] for gr in grads])
            for j in range(N):
                same = all(torch.equal(p[j], b[j]) for p, b in zip(stacked, before))
                assert same == (j != i)
            for q, gr in zip(separate[i], grads):
                q.grad = gr[i].clone()
            optims[i].step()
    check(stacked, separate, 1e-12, 1e-12)
    assert opt.steps == [3] * N


def test_heterogeneous_step_counts():
    stacked, separate, optims, g = make(torch.float64)
    opt = BatchedAdam(stacked, lr=1e-2)
    grads = grads_for(g, torch.float64)
    opt.step_agent(2, [gr[2] for gr in grads])
    for q, gr in zip(separate[2], grads):
        q.grad = gr[2].clone()
    optims[2].step()
    for _ in range(4):
        grads = grads_for(g, torch.float64)
        opt.step_all(grads)
        for i in range(N):
            for q, gr in zip(separate[i], grads):
                q.grad = gr[i].clone()
            optims[i].step()
    assert opt.steps == [4, 4, 5, 4]
    check(stacked, separate, 1e-10, 1e-12)


def test_state_dict_round_trip():
    stacked, _, _, g = make(torch.float32)
    opt = BatchedAdam(stacked, lr=1e-3)
    for _ in range(3):
        opt.step_all(grads_for(g, torch.float32))
    opt.step_agent(1, [gr[1] for gr in grads_for(g, torch.float32)])
    sd = opt.state_dict()
    clone = [p.clone() for p in stacked]
    opt2 = BatchedAdam(clone, lr=0.5)
    opt2.load_state_dict(sd)
    assert opt2.steps == opt.steps and opt2.lr == 1e-3
    more = grads_for(g, torch.float32)
    opt.step_all(more)
    opt2.step_all(more)
    for p, q in zip(stacked, clone):
        assert torch.equal(p, q)


def test_rejects_mismatched_agents():
    with pytest.raises(ValueError):
        BatchedAdam([torch.zeros(3, 2), torch.zeros(4, 2)], lr=1e-3)
