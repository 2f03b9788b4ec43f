"""The compiled engine of one :class:`~gradasym.algos.ccm_madrl.agent.CCMMADRL` agent.

The agent stays the one state container: :class:`CompiledEngine` works in place on numpy
views (shared memory, CPU) of the agent's tensors -- the actors' flat parameter and its
target, the critic's ``nn.Linear`` weights and biases and the target critic, both Adam
states (moments and step counts) -- so a checkpoint written with one engine is the
checkpoint of the other. Each entry point computes what the torch method of the same name
computes (``ccm-madrl.md``; the tests compare both and the plain reference):

* :meth:`update_on_batch` -- the critic update (TD targets with the target actors and the
  target critic's max over proposer rows, the loss over the selected rows, backward, Adam),
  the critic target update, the N sequential actor passes (:func:`kernels.actor_passes`)
  and the actor target update; returns the same :class:`UpdateResult` as the torch path;
* :meth:`actor_outputs`, :meth:`score_rows` -- acting: the actors on one joint state and
  the online critic's Q of the master's candidate rows;
* :meth:`priorities` -- the TD errors of new transitions (insertion priorities).

Small vector operations whose arithmetic the torch path defines (the reward scale, the
TD target formula, the target updates) are left to the same torch calls.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gradasym.algos.ccm_madrl.networks import soft_update_

from . import kernels

_SQUASH = {"tanh": kernels.TANH, "softsign": kernels.SOFTSIGN, "scaled-sigmoid": kernels.SCALED_SIGMOID}


def _t(a: np.ndarray) -> torch.Tensor:
    """A zero-copy tensor view of ``a`` (for torch's BLAS products)."""
    return torch.from_numpy(a)


def _spectral_bound(w: np.ndarray) -> float:
    """An upper bound on the largest singular value of ``w`` (as ``critic._spectral_norm_bound``)."""
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return math.sqrt(max(float(np.linalg.eigvalsh(gram)[-1]), 0.0)) * (1 + 1e-3) + 1e-30


class CompiledEngine:
    """Compiled training, acting and insertion for ``agent`` (see the module docstring)."""

    def __init__(self, agent) -> None:
        a = agent.cfg
        self.agent = agent
        self.dtype = np.float32 if agent.dtype == torch.float32 else np.float64
        self.relu = a.hidden_activation == "relu"
        self.kind = _SQUASH[a.output_activation]
        ens = agent.actors
        self.aoff = np.array([o for pair in ens._offsets for o in pair], dtype=np.int64)
        self.asz = np.array(ens.sizes, dtype=np.int64)  # [S, H1, H2, A]
        self.n = agent.n_agents
        self.sdim, self.adim = ens.state_dim, ens.action_dim
        self.js = self.n * self.sdim
        self.jd = self.js + self.n * self.adim
        self._spectral_ref: tuple[np.ndarray, float] | None = None  # (W1 at the last exact bound, the bound)

    # ------------------------------------------------------------------ views
    @staticmethod
    def _np(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy()

    def _critic(self, critic, blas: bool = False) -> tuple[np.ndarray, ...]:
        """``(w0, b0, tail, w1, b1, w2, b2, w1t, w0jt)`` of a critic: views of its parameters and
        transposed copies (``tail``: layer 0's columns after the joint states, ``w1t``: layer 1,
        ``w0jt``: layer 0's joint columns) for the outer-product products of the kernels.
        ``blas``: ``w1t`` and ``w0jt`` as transposed views, not copies (torch's BLAS takes them)."""
        w0, b0, w1, b1, w2, b2 = (self._np(p) for p in critic.parameters())
        tail = np.ascontiguousarray(w0[:, self.js:].T)
        w1t, w0jt = w1.T, w0[:, :self.jd].T
        if not blas:
            w1t, w0jt = np.ascontiguousarray(w1t), np.ascontiguousarray(w0jt)
        return (w0, b0, tail, w1, b1, w2, b2, w1t, w0jt)

    def _forward_all(self, flat: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, ...]:
        """Every actor on its inputs ``states (B, N, S)`` -> ``(h1, h2, z, act)``, agent first."""
        bsz, dt, sz = states.shape[0], self.dtype, self.asz
        h1 = np.empty((self.n, bsz, sz[1]), dt)
        h2 = np.empty((self.n, bsz, sz[2]), dt)
        z = np.empty((self.n, bsz, self.adim), dt)
        act = np.empty((self.n, bsz, self.adim), dt)
        kernels.actors_forward_all(flat, self.aoff, self.asz, states, self.relu, self.kind, h1, h2, z, act)
        return h1, h2, z, act

    def _as_np(self, t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().numpy(), dtype=self.dtype)

    # ------------------------------------------------------------- critic side
    # The critic update's large dense products go to torch's BLAS (``torch.mm``/``addmm`` on
    # zero-copy ``torch.from_numpy`` views, one thread per process as configured by
    # ``gradasym.process``; the same shapes give the same numbers), the per-row gathers,
    # masks and reductions around them to the kernels. (The actor passes keep their own
    # products: their rows are few per pass, and there a row's value must not depend on the
    # other rows evaluated, see ``kernels.head_rows``.)
    def _shared(self, arrays, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-transition part of layer 0, bias included: ``(b0 + x @ W_joint^T (B, H1), x)`` with
        ``x (B, N*(S+A))`` the joint inputs."""
        x = np.empty((states.shape[0], self.jd), self.dtype)
        kernels.joint_inputs(states, actions, x)
        return torch.addmm(_t(arrays[1]), _t(x), _t(arrays[8])).numpy(), x

    def _head(self, arrays, h1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The layers after the first of the rows whose pre-activations are ``h1 (M, H1)``
        (replaced in place by their activations) -> ``(h2 (M, H2), q (M,))``."""
        _, _, _, _, b1, w2, b2, w1t, _ = arrays
        h1_t = _t(h1)
        if self.relu:
            h1_t.relu_()
        h2 = torch.addmm(_t(b1), h1_t, _t(w1t))
        if self.relu:
            h2.relu_()
        return h2.numpy(), torch.addmv(_t(b2), h2, _t(w2)[0]).numpy()

    def _q_max(self, arrays, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``max_k Q(s_b, a_b, s_bk, a_bk)`` over proposer rows (``a_bk[0] >= 0``), or the
        zero-input Q where there is none -> ``(B,)`` (every proposer row evaluated)."""
        bsz, n = states.shape[:2]
        shared, _ = self._shared(arrays, states, actions)
        h1 = np.empty((bsz * n, arrays[0].shape[0]), self.dtype)
        rb = np.empty(bsz * n, np.int64)
        m = kernels.proposer_rows(shared, arrays[2], states, actions, h1, rb)
        _, q = self._head(arrays, h1[:m])
        q_out = np.empty(bsz, self.dtype)
        kernels.max_per_transition(q, rb[:m], q_out)
        return q_out

    def td_targets(self, rewards: torch.Tensor, next_states: np.ndarray, dones: torch.Tensor) -> torch.Tensor:
        """``y = r + gamma * q' * (1 - done)`` (``rewards`` already scaled) with ``q'`` the target
        critic's max over the next proposers of the target actors' actions (zero input if none)."""
        agent = self.agent
        with torch.no_grad():  # the target actors as one batched product per layer (torch's baddbmm,
            # ~6x faster here than the per-row kernel, whose inner loops of 32-64 stay scalar)
            act = agent.target_actors(_t(next_states).transpose(0, 1))
        a_next = np.ascontiguousarray(act.numpy().transpose(1, 0, 2))
        q_next = self._q_max(self._critic(agent.target_critic, blas=True), next_states, a_next)
        return rewards + agent.gamma * torch.from_numpy(q_next) * (1.0 - dones)

    def _terms(self, critic_arrays, states, actions, b_idx, k_idx):
        """Q of the rows ``(b_idx[t], k_idx[t])`` (``k = -1``: zero input) -> ``(q (T,), h1 (T, H1),
        h2 (T, H2))``, the hidden activations for the backward."""
        shared, _ = self._shared(critic_arrays, states, actions)
        h1 = np.empty((b_idx.shape[0], critic_arrays[0].shape[0]), self.dtype)
        kernels.term_rows(shared, critic_arrays[2], states, actions, b_idx, k_idx, h1)
        h2, q = self._head(critic_arrays, h1)
        return q, h1, h2

    def _critic_backward(self, arrays, states, actions, b_idx, k_idx, h1, h2, g_q, grads) -> None:
        """Gradients of ``sum_t g_q[t] * Q_t`` w.r.t. the critic's layers for the rows of
        :meth:`_terms` (their hidden activations ``h1``, ``h2``) -> ``grads = [d0 (H1, in), db0,
        d1 (H2, H1), db1, d2 (1, H2), db2 (1,)]``. The joint part of layer 0's gradient is
        summed per transition first (its input is shared by the transition's rows)."""
        w1 = arrays[3]
        d0, db0, d1, db1, d2, db2 = grads
        t, dt = b_idx.shape[0], self.dtype
        g2 = np.empty((t, w1.shape[0]), dt)
        kernels.critic_backward_head(arrays[5], self.relu, h2, g_q, g2, d2, db2, db1)
        g2_t = _t(g2)
        torch.mm(g2_t.t(), _t(h1), out=_t(d1))  # d1 = g2^T h1
        g1 = torch.mm(g2_t, _t(w1)).numpy()  # g1 = g2 W1, masked by ReLU' in the kernel
        g_joint = np.empty((states.shape[0], w1.shape[1]), dt)
        x_own = np.empty((t, self.sdim + self.adim), dt)
        kernels.critic_backward_first(self.relu, states, actions, b_idx, k_idx, h1, g1, g_joint, db0, x_own)
        x = np.empty((states.shape[0], self.jd), dt)
        kernels.joint_inputs(states, actions, x)
        d0_t = _t(d0)
        d0_t[:, :self.jd] = torch.mm(_t(g_joint).t(), _t(x))  # joint columns: g_joint^T x
        d0_t[:, self.jd:] = torch.mm(_t(x_own).t(), _t(g1)).t()  # own columns: (x_own^T g1)^T (the long
        # dimension H1 last: as g1^T x_own, BLAS ran ~8x slower on this (512 x T) by (T x 10) shape)

    def priorities(self, states, actions, x, rewards_scaled: torch.Tensor, next_states, dones: torch.Tensor) -> np.ndarray:
        """Insertion priorities ``(T,)`` (float64): each transition's summed squared TD error of its
        critic terms against its target (as :meth:`CCMMADRL.remember_many`)."""
        agent = self.agent
        s, a, ns = (np.ascontiguousarray(v, dtype=self.dtype) for v in (states, actions, next_states))
        y = self.td_targets(rewards_scaled, ns, dones).numpy()
        b_idx, k_idx = (t.numpy().astype(np.int64) for t in agent._critic_terms(agent.as_tensor(x)))
        q, _, _ = self._terms(self._critic(agent.critic, blas=True), s, a, b_idx, k_idx)
        d = q - y[b_idx]
        err = np.zeros(y.shape[0], self.dtype)
        np.add.at(err, b_idx, d * d)
        return err.astype(np.float64)

    def actor_outputs(self, states: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """Acting: every actor on its own state ``states (N, S)`` -> ``(actions (N, A)`` numpy,
        ``z (N, A)`` tensor: the pre-activations ``ActResult.preact`` holds)."""
        s = np.ascontiguousarray(states, dtype=self.dtype)[None]
        _, _, z, act = self._forward_all(self._np(self.agent.actors.flat), s)
        return act[:, 0], torch.from_numpy(np.ascontiguousarray(z[:, 0]))

    def score_rows(self, states: np.ndarray, actions: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Online-critic ``Q(s, a, s_k, a_k)`` of agents ``rows`` for one joint state/action (float64)."""
        s = np.ascontiguousarray(states, dtype=self.dtype)[None]
        a = np.ascontiguousarray(actions, dtype=self.dtype)[None]
        k = np.asarray(rows, dtype=np.int64)
        q, _, _ = self._terms(self._critic(self.agent.critic, blas=True), s, a, np.zeros_like(k), k)
        return q.astype(np.float64)

    def _critic_step(self, batch) -> tuple[float, np.ndarray, dict, list]:
        """Critic update (``ccm-madrl.md``, "Critic update"): loss, priority errors, gradients
        before clipping, hidden activations; the critic's Adam step in place."""
        agent, dt = self.agent, self.dtype
        s, a, ns = self._as_np(batch.states), self._as_np(batch.actions), self._as_np(batch.next_states)
        y = self.td_targets(agent._scaled_rewards(batch.rewards), ns, batch.dones).numpy()
        b_idx, k_idx = (t.numpy().astype(np.int64) for t in agent._critic_terms(batch.x))
        arrays = self._critic(agent.critic, blas=True)
        q, h1, h2 = self._terms(arrays, s, a, b_idx, k_idx)
        w = self._as_np(batch.weights)
        w_t, y_t = w[b_idx], y[b_idx]
        e = w_t * q - w_t * y_t  # (w Q - w y), one per term
        t = dt(b_idx.shape[0])
        loss = float(np.mean(e * e, dtype=dt))
        d = q - y_t
        td = np.zeros(y.shape[0], dt)
        np.add.at(td, b_idx, d * d)
        g_q = (e * dt(2) / t) * w_t  # d loss / d Q of each term
        grads = [np.empty_like(self._np(p)) for p in agent.critic.parameters()]
        self._critic_backward(arrays, s, a, b_idx, k_idx, h1, h2, g_q, grads)
        named = {f"l{j // 2}.{'weight' if j % 2 == 0 else 'bias'}": torch.from_numpy(g) for j, g in enumerate(grads)}
        step = grads
        if agent.grad_clip is not None:  # clip_grad_norm_ over all critic parameters (on copies)
            total = np.linalg.norm(np.array([np.linalg.norm(g.ravel()) for g in grads], dtype=dt))
            coef = min(dt(agent.grad_clip) / (total + dt(1e-6)), dt(1.0))
            step = [g * coef for g in grads]
        self._adam_critic(step)
        return loss, td.astype(np.float64), named, [torch.from_numpy(h1), torch.from_numpy(h2)]

    def _adam_critic(self, grads: list[np.ndarray]) -> None:
        """``torch.optim.Adam.step`` of the critic, in place on the optimiser's own state."""
        opt = self.agent.critic_optim
        group = opt.param_groups[0]
        if group["weight_decay"] or group["amsgrad"] or group["maximize"]:
            raise ValueError("the compiled engine steps a plain Adam (no weight decay, amsgrad or maximize)")
        lr, (beta1, beta2), eps = float(group["lr"]), group["betas"], group["eps"]
        for p, g in zip(group["params"], grads):
            state = opt.state[p]
            if len(state) == 0:  # as torch.optim.Adam._init_group
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            step = float(state["step"].item())
            hp = np.array([-(lr / (1 - beta1**step)), (1 - beta2**step) ** 0.5, 1 - beta1, beta2, 1 - beta2, eps],
                          dtype=self.dtype)
            kernels.adam_step(self._np(p).reshape(-1), g.reshape(-1), self._np(state["exp_avg"]).reshape(-1),
                              self._np(state["exp_avg_sq"]).reshape(-1), hp)

    # -------------------------------------------------------------- actor side
    def _lipschitz(self, arrays) -> np.ndarray:
        """``[lip2, w_oa_norm, const, rel_slack, c_a (A), c (H1)]`` of the online critic (the
        constants of ``critic.BatchCritic``'s drift bounds, in float64, then the dtype)."""
        w0, _, _, w1, b1, w2, b2 = (x.astype(np.float64) for x in arrays[:7])
        c = np.abs(w2[0])
        const = float(np.abs(b2).sum())
        const += float(c @ np.abs(b1))
        c = np.abs(w1).T @ c
        w_oa = w0[:, self.jd + self.sdim:]
        c_a = np.abs(w_oa).T @ c
        lip2 = float(np.linalg.norm(w2)) * self._spectral_w1(w1)
        rel_slack = 64 * float(np.finfo(self.dtype).eps)
        return np.concatenate([[lip2, _spectral_bound(w_oa), const, rel_slack], c_a, c]).astype(self.dtype)

    SPECTRAL_REFRESH = 0.01  # recompute the exact bound when the drift bound exceeds this share of it

    def _spectral_w1(self, w1: np.ndarray) -> float:
        """An upper bound on ``||W1||_2``: the eigenvalue bound of :func:`_spectral_bound` at a
        reference ``W1_ref`` plus ``||W1 - W1_ref||_F`` (``||A + D||_2 <= ||A||_2 + ||D||_F``), so
        that the eigenvalue problem is solved only when the critic has drifted by more than
        :attr:`SPECTRAL_REFRESH` of the bound since (a bound, never an estimate: pruning stays exact)."""
        if self._spectral_ref is not None and self._spectral_ref[0].shape == w1.shape:
            ref, bound = self._spectral_ref
            drift = float(np.linalg.norm((w1 - ref).ravel())) * (1 + 1e-3)
            if drift <= self.SPECTRAL_REFRESH * bound:
                return bound + drift
        bound = _spectral_bound(w1)
        self._spectral_ref = (w1.copy(), bound)
        return bound

    def _actor_step(self, batch) -> dict:
        """The N sequential actor passes (:func:`kernels.actor_passes`) in place."""
        agent, dt, n = self.agent, self.dtype, self.n
        s = self._as_np(batch.states)
        w = self._as_np(batch.weights)
        bsz = s.shape[0]
        opt = agent.actor_optim
        beta1, beta2 = opt.betas
        hp = np.empty((n, 6), dt)
        for i, t0 in enumerate(opt.steps):
            t = t0 + 1
            hp[i] = [-(opt.lr / (1 - beta1**t)), (1 - beta2**t) ** 0.5, 1 - beta1, beta2, 1 - beta2, opt.eps]
        arrays = self._critic(agent.critic)
        flat = self._np(agent.actors.flat)
        grads = np.empty_like(flat)
        losses = np.empty(n, dt)
        sz = self.asz
        z0 = np.empty((n, bsz, self.adim), dt)
        h1 = np.empty((n, bsz, sz[1]), dt)
        h2 = np.empty((n, bsz, sz[2]), dt)
        k_log = np.empty((n, bsz), np.int64)
        n_eval = np.zeros(1, np.int64)
        kernels.actor_passes(s, w, flat, self._np(opt.exp_avg[0]), self._np(opt.exp_avg_sq[0]), hp, self.aoff, self.asz,
                             self.relu, self.kind, float(agent.grad_clip or 0.0), float(agent.preact_penalty),
                             *arrays, self._lipschitz(arrays), bool(agent.prune_rows),
                             grads, losses, z0, h1, h2, k_log, n_eval)
        opt.steps = [t + 1 for t in opt.steps]
        self.last_rows = k_log  # the chosen row of every pass (tests, diagnostics)
        self.rows_evaluated = int(n_eval[0])  # critic rows evaluated in the N passes (benchmarks)
        return {"losses": losses.astype(np.float64), "grads": torch.from_numpy(grads), "z": z0, "h": [h1, h2]}

    def update_on_batch(self, batch):
        """One training update on ``batch`` (no sampling, no priority write-back): what
        :meth:`CCMMADRL.update_on_batch` computes, as compiled code."""
        from gradasym.algos.ccm_madrl.agent import UpdateResult  # noqa: PLC0415

        agent = self.agent
        # --- Critic update, then its target (tau = 1: overwritten) before the actor updates
        critic_loss, td_errors, critic_grads, critic_hidden = self._critic_step(batch)
        soft_update_(agent.target_critic, agent.critic, agent.tau)
        # --- Actor updates (every policy_delay-th update), then their targets
        actor_step = agent.n_updates % agent.policy_delay == 0
        if actor_step:
            actor = self._actor_step(batch)
            soft_update_(agent.target_actors.flat, agent.actors.flat, agent.tau)
        else:  # only the monitor's forward
            h1, h2, z, _ = self._forward_all(self._np(agent.actors.flat), self._as_np(batch.states))
            actor = {"losses": np.full(self.n, np.nan), "grads": None, "z": z, "h": [h1, h2]}
        agent.n_updates += 1
        return UpdateResult(
            critic_loss=critic_loss,
            actor_loss=float(actor["losses"].mean()),
            actor_losses=actor["losses"],
            actor_grads=agent.actors.layer_views(actor["grads"]) if actor_step else None,
            critic_grads=critic_grads,
            preact=torch.from_numpy(actor["z"]).transpose(0, 1).contiguous(),
            actor_hidden=[torch.from_numpy(h).transpose(0, 1) for h in actor["h"]],
            critic_hidden=critic_hidden,
            indices=np.asarray(batch.indices),
            td_errors=td_errors,
            weights=batch.weights.double().numpy(),
            preact_pool=None,
            actor_updated=actor_step,
        )
