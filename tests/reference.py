"""A plain, obviously-correct CCM-MADRL update, written only for tests.

No tricks: N separate ``nn.Sequential`` actors, a plain ``nn.Sequential`` critic fed
the full concatenated input ``[joint s, joint a, s_k, a_k]`` for every row, N
separate ``torch.optim.Adam``, Python loops over agents and transitions, the max
over proposers computed on all rows with gradient. It follows ``ccm-madrl.md``
line by line, and the tests check that :class:`gradasym.algos.ccm_madrl.agent.CCMMADRL` computes
the same numbers.

Mitigations (``docs/presets.md``) are written out the plain way too: ``nn.LayerNorm``
modules (before the squashing for ``layernorm``, after each hidden activation for
``fullnorm``, whose input normalisation uses the agent's running statistics passed
in), ``nn.Softsign`` / a scaled sigmoid, ``torch.nn.utils.clip_grad_norm_`` per actor
and for the critic, the pre-activation penalty on ``actor[:-1](s)``, the reward scale
passed in, delayed actor updates, and the two stochastic policies with
``torch.distributions`` (noise passed in).

Gradient tracking: with ``tracking="original"`` the reference does what the
original code did -- in actor i's pass it zeroes only actor i's ``.grad`` and
back-propagates loss_i into every actor and into the critic, so at the end actor
j's ``.grad`` holds ``sum_{i >= j} dL_i/dtheta_j`` and the critic's ``.grad``
holds its own loss gradient plus all actor losses' gradients.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import torch
from torch import nn

from gradasym.algos.ccm_madrl.replay import ReplayBatch


def _act(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.Identity()


class ScaledSigmoid(nn.Module):
    def forward(self, z):
        return 2 * torch.sigmoid(z) - 1


def _squash_module(cfg) -> nn.Module:
    if cfg.policy != "deterministic":
        return nn.Identity()  # the stochastic heads are applied in ReferenceCCM.actor_out
    return {"tanh": nn.Tanh, "softsign": nn.Softsign, "scaled-sigmoid": ScaledSigmoid}[cfg.output_activation]()


class ReferenceCCM:
    def __init__(self, agent) -> None:
        """Copy the networks (weights only; fresh optimisers) of a ``CCMMADRL`` ``agent``."""
        cfg = agent.cfg  # the agent's AgentConfig
        self.n = agent.n_agents
        self.gamma = cfg.gamma
        self.tau = cfg.tau
        self.sequential = cfg.actor_update == "sequential"
        self.original = agent.tracking == "original"
        dtype = agent.dtype
        ens = agent.actors
        sizes = ens.sizes

        self.cfg = cfg
        self.actors: list[nn.Sequential] = []
        for i in range(self.n):
            layers: list[nn.Module] = []
            for j in range(len(sizes) - 1):
                lin = nn.Linear(sizes[j], sizes[j + 1], dtype=dtype)
                with torch.no_grad():
                    lin.weight.copy_(ens.weight(j)[i].t())  # ensemble stores (in, out)
                    lin.bias.copy_(ens.bias(j)[i])
                layers.append(lin)
                last = j == len(sizes) - 2
                if not last:
                    layers.append(_act(cfg.hidden_activation))
                if (cfg.actor_norm == "fullnorm" and not last) or (cfg.actor_norm == "layernorm" and last):
                    ln = nn.LayerNorm(sizes[j + 1], dtype=dtype)
                    with torch.no_grad():
                        ln.weight.copy_(ens.ln_weight(j)[i])
                        ln.bias.copy_(ens.ln_bias(j)[i])
                    layers.append(ln)
                if last:
                    layers.append(_squash_module(cfg))
            self.actors.append(nn.Sequential(*layers))

        csizes = agent.critic.sizes
        clayers: list[nn.Module] = []
        for j in range(len(csizes) - 1):
            lin = nn.Linear(csizes[j], csizes[j + 1], dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(agent.critic.layers[j].weight)
                lin.bias.copy_(agent.critic.layers[j].bias)
            clayers.append(lin)
            if j < len(csizes) - 2:
                clayers.append(_act(cfg.hidden_activation))
        self.critic = nn.Sequential(*clayers)

        self.target_actors = copy.deepcopy(self.actors)
        self.target_critic = copy.deepcopy(self.critic)
        self.actor_optims = [torch.optim.Adam(a.parameters(), lr=cfg.actor_lr) for a in self.actors]
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def critic_input(s_b, a_b, k):
        """The 510-dim input of row k of one transition (k = None: zero input)."""
        joint = torch.cat([s_b.flatten(), a_b.flatten()])
        if k is None:
            own = torch.zeros(s_b.shape[1] + a_b.shape[1], dtype=s_b.dtype)
        else:
            own = torch.cat([s_b[k], a_b[k]])
        return torch.cat([joint, own])

    def q_rows(self, critic, s_b, a_b):
        """Q of every row k of one transition: (N,)."""
        x = torch.stack([self.critic_input(s_b, a_b, k) for k in range(self.n)])
        return critic(x).squeeze(-1)

    def q_zero(self, critic, s_b, a_b):
        return critic(self.critic_input(s_b, a_b, None)).squeeze(-1)

    def max_q(self, critic, s_b, a_b):
        """max over proposers (a_bk[0] >= 0) of Q, or the zero-input Q if there is none."""
        proposers = [k for k in range(self.n) if a_b[k, 0] >= 0]
        if not proposers:
            return self.q_zero(critic, s_b, a_b)
        q = self.q_rows(critic, s_b, a_b)
        return torch.max(q[proposers])

    def actor_out(self, actor, s, noise=None):
        """One actor on states (B, S): (action, pre-activation z, regulariser of its loss)."""
        cfg = self.cfg
        out = actor(s)
        a_dim = 3
        reg = torch.zeros((), dtype=s.dtype)
        if cfg.policy == "deterministic":
            z = actor[:-1](s)  # the squashing's input
            action = out
        elif cfg.policy == "squashed-gaussian":
            mean, log_std = out[:, :a_dim], out[:, a_dim:].clamp(-20, 2)
            z = mean
            if noise is None:
                action = torch.tanh(mean)
            else:
                u = mean + log_std.exp() * noise
                action = torch.tanh(u)
                logp = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
                logp = logp - torch.log(1 - action**2 + 1e-6).sum(-1)
                reg = reg + cfg.entropy_coef * logp.mean()
        else:  # beta
            alpha = torch.nn.functional.softplus(out[:, :a_dim]) + 1
            beta = torch.nn.functional.softplus(out[:, a_dim:]) + 1
            dist = torch.distributions.Beta(alpha, beta)
            action = 2 * dist.mean - 1
            z = torch.log(alpha / beta)
            reg = reg - cfg.entropy_coef * dist.entropy().sum(-1).mean()
        if cfg.preact_penalty:
            reg = reg + cfg.preact_penalty * (z**2).mean()
        return action, z, reg

    def all_actions(self, actors, states, noise=None):
        """(B, N, A): actor i on s_bi (noise: (N, B, A) for the squashed Gaussian)."""
        return torch.stack([self.actor_out(actors[i], states[:, i], None if noise is None else noise[i])[0]
                            for i in range(self.n)], dim=1)

    def actor_inputs(self, states):
        """fullnorm: clip((s - mean_i) / sqrt(var_i + 1e-8), -10, 10) with the given statistics."""
        if self.obs_stats is None:
            return states
        mean, var = self.obs_stats
        return ((states - mean.to(states.dtype)) / torch.sqrt(var + 1e-8).to(states.dtype)).clamp(-10, 10)

    @staticmethod
    def _soft(target: nn.Module, online: nn.Module, tau: float) -> None:
        with torch.no_grad():
            for t, o in zip(target.parameters(), online.parameters()):
                t.copy_((1 - tau) * t + tau * o) if tau < 1 else t.copy_(o)

    # ------------------------------------------------------------------ update
    obs_stats = None  # fullnorm: (mean (N, S), var (N, S)) set by the test
    n_updates = 0

    def update(self, batch, reward_scale: float = 1.0, noise=None) -> dict:
        """One update; ``reward_scale`` divides the rewards (reward-norm), ``noise`` (N, B, A)
        is the squashed Gaussian's reparameterisation noise of this update."""
        cfg = self.cfg
        s, a, x = batch.states, batch.actions, batch.x
        r, s2, d, w = batch.rewards / reward_scale, batch.next_states, batch.dones, batch.weights
        bsz = s.shape[0]
        s_act = self.actor_inputs(s)  # what the actors see (the critic sees s)
        actor_step = self.n_updates % cfg.policy_delay == 0
        self.n_updates += 1

        # ---- critic update
        with torch.no_grad():
            a2 = self.all_actions(self.target_actors, self.actor_inputs(s2))
            y = torch.stack([r[b] + self.gamma * self.max_q(self.target_critic, s2[b], a2[b]) * (1 - d[b])
                             for b in range(bsz)])
        terms = []  # (b, Q)
        for b in range(bsz):
            selected = [k for k in range(self.n) if x[b, k] == 1]
            if selected:
                for k in selected:
                    terms.append((b, self.critic(self.critic_input(s[b], a[b], k)).squeeze(-1)))
            else:
                terms.append((b, self.q_zero(self.critic, s[b], a[b])))
        loss = torch.stack([(w[b] * q - w[b] * y[b]) ** 2 for b, q in terms]).mean()
        td = torch.zeros(bsz, dtype=s.dtype)
        for b, q in terms:
            td[b] += (q.detach() - y[b]) ** 2
        self.critic_optim.zero_grad()
        loss.backward()
        critic_grads = [p.grad.clone() for p in self.critic.parameters()]
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
        self.critic_optim.step()
        self._soft(self.target_critic, self.critic, self.tau)

        # ---- actor updates
        for actor in self.actors:
            actor.zero_grad()
        own_grads: list[list[torch.Tensor]] = [None] * self.n  # type: ignore[list-item]
        losses = []
        if not actor_step:
            return {"critic_loss": float(loss.detach()), "td_errors": td, "y": y, "critic_grads": critic_grads,
                    "actor_grads": None, "actor_losses": [float("nan")] * self.n}
        if self.sequential:
            for i in range(self.n):
                self.actors[i].zero_grad()
                if not self.original:
                    for other in self.actors:
                        other.zero_grad()
                acts = self.all_actions(self.actors, s_act, noise)  # every actor, with gradient
                q = torch.stack([self.max_q(self.critic, s[b], acts[b]) for b in range(bsz)])
                reg_i = self.actor_out(self.actors[i], s_act[:, i], None if noise is None else noise[i])[2]
                loss_i = -(w * q).sum() / bsz + reg_i
                loss_i.backward()
                own_grads[i] = [p.grad.clone() for p in self.actors[i].parameters()]
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.actors[i].parameters(), cfg.grad_clip)
                self.actor_optims[i].step()
                self._soft(self.target_actors[i], self.actors[i], self.tau)
                losses.append(float(loss_i.detach()))
        else:
            acts = self.all_actions(self.actors, s_act, noise)
            q = torch.stack([self.max_q(self.critic, s[b], acts[b]) for b in range(bsz)])
            loss_all = -(w * q).sum() / bsz
            regs = [self.actor_out(self.actors[i], s_act[:, i], None if noise is None else noise[i])[2]
                    for i in range(self.n)]
            (loss_all + sum(regs)).backward()
            for i in range(self.n):
                own_grads[i] = [p.grad.clone() for p in self.actors[i].parameters()]
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.actors[i].parameters(), cfg.grad_clip)
                self.actor_optims[i].step()
                self._soft(self.target_actors[i], self.actors[i], self.tau)
            losses = [float(loss_all.detach() + regs[i].detach()) for i in range(self.n)]

        if self.original:
            actor_grads = [[p.grad.clone() for p in actor.parameters()] for actor in self.actors]
            critic_grads = [p.grad.clone() for p in self.critic.parameters()]
        else:
            actor_grads = own_grads
        return {
            "critic_loss": float(loss.detach()),
            "td_errors": td,
            "y": y,
            "critic_grads": critic_grads,  # [l0.weight, l0.bias, ...] nn.Linear layout
            "actor_grads": actor_grads,  # per agent: [l0.weight (out, in), l0.bias, ...]
            "actor_losses": losses,
        }

    def actor_params(self, i: int) -> list[torch.Tensor]:
        return [p.detach() for p in self.actors[i].parameters()]


# ---------------------------------------------------------------------- test data
def through_torch_save(state):
    """``state`` after ``torch.save`` and ``torch.load(weights_only=True)`` (what a checkpoint
    file gives back; weights_only proves the state is plain, safely loadable data)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def random_states(rng, shape, dtype=torch.float64) -> torch.Tensor:
    """MEC-like raw states ``shape + (7,)``: [power, gain, energy, size, cycles, deadline, res]."""
    lo = np.array([1.0, 5.0, 0.5, 1.0, 300.0, 0.1, 0.4])
    hi = np.array([24.0, 14.0, 3.2, 50.0, 737.5, 0.9, 1.5])
    return torch.tensor(lo + (hi - lo) * rng.random(tuple(shape) + (7,)), dtype=dtype)


def make_batch(rng, n: int, bsz: int, dtype=torch.float64, p_select: float = 0.3):
    """A replay-like batch with some transitions where nobody was selected."""
    x = torch.tensor((rng.random((bsz, n)) < p_select).astype(float), dtype=dtype)
    x[: max(1, bsz // 4)] = 0.0  # zero-input critic terms
    return ReplayBatch(
        states=random_states(rng, (bsz, n), dtype),
        actions=torch.tensor(rng.uniform(-1, 1, (bsz, n, 3)), dtype=dtype),
        x=x,
        rewards=torch.tensor(rng.uniform(-3000, -500, bsz), dtype=dtype),
        next_states=random_states(rng, (bsz, n), dtype),
        dones=torch.tensor((rng.random(bsz) < 0.25).astype(float), dtype=dtype),
        weights=torch.tensor(rng.uniform(0.2, 1.0, bsz), dtype=dtype),
        indices=np.arange(bsz),
    )


def gemm_acc_loop(a, w, out, m):
    """The compiled engine's ``kernels.gemm_acc`` as it was written before its four-k form (commit
    b4f0529), verbatim: ``out[:m] += a[:m] @ w``, four rows at a time, one k per load and store of
    ``out``, a k skipped where all four rows have ``a[., k] == 0``. Plain Python: jit it with the
    engine's flags (``numba.njit(fastmath=kernels.FASTMATH)``) to get the engine's old bits
    (tests/algos/ccm_madrl/test_kernels.py, benchmarks/bench_compiled.py --gemm)."""
    kdim = a.shape[1]
    ncol = w.shape[1]
    r = 0
    while r + 4 <= m:
        o0, o1, o2, o3 = out[r], out[r + 1], out[r + 2], out[r + 3]
        for k in range(kdim):
            x0, x1, x2, x3 = a[r, k], a[r + 1, k], a[r + 2, k], a[r + 3, k]
            if x0 == 0 and x1 == 0 and x2 == 0 and x3 == 0:
                continue
            wk = w[k]
            for j in range(ncol):
                wj = wk[j]
                o0[j] += x0 * wj
                o1[j] += x1 * wj
                o2[j] += x2 * wj
                o3[j] += x3 * wj
        r += 4
    while r < m:
        o = out[r]
        for k in range(kdim):
            x = a[r, k]
            if x != 0:
                wk = w[k]
                for j in range(ncol):
                    o[j] += x * wk[j]
        r += 1
