"""The master critic and all of its row algebra (``ccm-madrl.md``, "Networks").

The critic Q(s, a, s_k, a_k) takes ``[joint state, joint action, own state, own action]``.
Every use of it in CCM-MADRL evaluates it for *rows* of a batch of transitions (row k of
transition b: agent k's own state and action, ``k = -1`` the zero-input row), so this
module holds the network and every way of evaluating it:

* :class:`Critic` -- an ordinary ``nn.Module`` of ``nn.Linear`` layers (visibly the network
  of the spec) with the first layer split into a per-transition part (joint state and
  joint action, shared by all N rows of a transition) and a per-row part (own state and
  own action). This is the exact algebra ``W [x_joint; x_own] + b = (W_joint x_joint + b)
  + W_own x_own``; only floating-point rounding differs from the unsplit product.
  ``q_pairs`` (chosen rows, differentiable), ``q_max`` (max over a row mask, zero input
  where the mask is empty), ``head_vjp`` (hand-written backward of the layers after the
  first one);
* :class:`BatchCritic` -- the online critic on one batch of states while the joint
  action changes (the sequential actor loop): the action-independent parts computed once,
  one action column refreshed per pass, the arg-max row found with exact Lipschitz row
  pruning, and the gradient of the chosen rows' Q w.r.t. one agent's action
  (:meth:`BatchCritic.action_grad`).

The agent (:mod:`gradasym.algos.ccm_madrl.agent`) uses only these entry points, so it reads as the
algorithm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradasym.algos.ccm_madrl.layers import Activation, _linear_default_init_, _output_init_, activation_fn, relu_backward


class Critic(nn.Module):
    """The master critic Q(s, a, s_k, a_k): ``[N*S, N*A, S, A] -> *hidden -> 1``.

    An ordinary stack of ``nn.Linear`` layers (``self.layers``); ``forward`` takes
    the full concatenated input. The ``q_*`` helpers evaluate it for the rows of a
    batch of transitions with the first layer split (shared per transition + own
    per row). Row ``k = -1`` means the zero-input row (own state and action = 0).
    """

    def __init__(
        self,
        n_agents: int,
        state_dim: int = 7,
        action_dim: int = 3,
        hidden: Sequence[int] = (512, 128),
        hidden_activation: Activation = "relu",
        output_init: float = 3e-3,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.n_agents = int(n_agents)
        self.state_dim = int(state_dim)
        self.action_dim = int(action_dim)
        self.joint_state_dim = self.n_agents * self.state_dim
        self.joint_dim = self.n_agents * (self.state_dim + self.action_dim)
        self.input_dim = self.joint_dim + self.state_dim + self.action_dim
        self.sizes = [self.input_dim, *[int(h) for h in hidden], 1]
        self.hidden_activation = hidden_activation
        self._act = activation_fn(hidden_activation)
        # skip_init: nn.Linear's constructor would draw from the global RNG.
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, fan_in, fan_out, dtype=dtype)
            for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:])
        )
        self.reset_parameters(generator if generator is not None else torch.Generator().manual_seed(0), output_init)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator, output_init: float = 3e-3) -> None:
        for j, layer in enumerate(self.layers):
            if j < len(self.layers) - 1:
                _linear_default_init_(layer.weight, layer.bias, generator)
            else:
                _output_init_(layer.weight, layer.bias, output_init, generator)

    def layer_views(self, grads: bool = False) -> dict[str, Tensor]:
        """``{"l{j}.weight": (out, in), "l{j}.bias": (out,)}`` (parameters, or their ``.grad``)."""
        out: dict[str, Tensor] = {}
        for j, layer in enumerate(self.layers):
            out[f"l{j}.weight"] = layer.weight.grad if grads else layer.weight
            out[f"l{j}.bias"] = layer.bias.grad if grads else layer.bias
        return out

    # ------------------------------------------------------------ plain forward
    def forward(self, x: Tensor) -> Tensor:
        """Q for full inputs ``(..., input_dim) -> (...)``."""
        return self.head(self.layers[0](x))

    def head(self, pre1: Tensor, hidden: list[Tensor] | None = None) -> Tensor:
        """Everything after the first layer's affine map: ``(..., H1) -> (...)``.

        If ``hidden`` is a list, the hidden activations are appended to it.
        """
        h = self._act(pre1)
        if hidden is not None:
            hidden.append(h)
        for layer in self.layers[1:-1]:
            h = self._act(layer(h))
            if hidden is not None:
                hidden.append(h)
        return self.layers[-1](h).squeeze(-1)

    @torch.no_grad()
    def head_vjp(self, pre1: Tensor, grad_q: Tensor) -> tuple[Tensor, Tensor]:
        """``(q, d(sum grad_q * q)/d pre1)`` for first-layer pre-activations ``pre1 (B, H1)``.

        Plain back-propagation through :meth:`head` (ReLU' = [output > 0]) without a
        graph; used for the actor gradients, where the critic itself is not trained.
        """
        hs = [self._act(pre1)]
        for layer in self.layers[1:-1]:
            hs.append(self._act(layer(hs[-1])))
        return self.head_backward(hs, grad_q)

    @torch.no_grad()
    def head_backward(self, hidden: Sequence[Tensor], grad_q: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`head_vjp` given the forward: ``hidden`` = the hidden activations of the
        rows (``act(pre1)``, then each later hidden layer's output, ``(B, H_l)`` each) ->
        ``(q, d(sum grad_q * q)/d pre1)``. The output layer runs here on the B rows, so q is
        what :meth:`head_vjp` returns for the same activations."""
        relu = self.hidden_activation == "relu"
        out = self.layers[-1]
        q = out(hidden[-1]).squeeze(-1)
        g = grad_q.unsqueeze(1) * out.weight  # (B, H_last)
        for j in range(len(hidden) - 1, 0, -1):
            if relu:
                g = relu_backward(g, hidden[j])
            g = g @ self.layers[j].weight
        if relu:
            g = relu_backward(g, hidden[0])
        return q, g

    # ------------------------------------------------------- split first layer
    def first_layer_split(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Views ``(W_joint_state, W_joint_action, W_own_state, W_own_action, b)`` of layer 0.

        Shapes ``(H, N*S), (H, N*A), (H, S), (H, A), (H,)``; they are views of the
        parameter, so gradients flow into ``layers[0]``.
        """
        w, b = self.layers[0].weight, self.layers[0].bias
        js, jd, sd = self.joint_state_dim, self.joint_dim, self.state_dim
        return w[:, :js], w[:, js:jd], w[:, jd : jd + sd], w[:, jd + sd :], b

    def shared(self, states: Tensor, actions: Tensor) -> Tensor:
        """Per-transition part of layer 0 (bias included): ``(B,N,S),(B,N,A) -> (B,H)``."""
        w, b = self.layers[0].weight, self.layers[0].bias
        x = torch.cat([states.flatten(-2), actions.flatten(-2)], dim=-1)
        return F.linear(x, w[:, : self.joint_dim], b)

    def own(self, own_states: Tensor, own_actions: Tensor) -> Tensor:
        """Per-row part of layer 0 (no bias): ``(...,S),(...,A) -> (...,H)``."""
        w = self.layers[0].weight
        return F.linear(torch.cat([own_states, own_actions], dim=-1), w[:, self.joint_dim :])

    def full_input(self, states: Tensor, actions: Tensor, k: Tensor | int | None) -> Tensor:
        """The plain 510-dim input rows (for tests/debugging): ``(B, input_dim)`` for rows ``k``.

        ``k`` is ``(B,)`` row indices (``-1`` = zero input) or an int, or None = zero input.
        """
        bsz = states.shape[0]
        joint = torch.cat([states.flatten(-2), actions.flatten(-2)], dim=-1)
        if k is None:
            own = joint.new_zeros(bsz, self.state_dim + self.action_dim)
        else:
            k = torch.as_tensor(k, device=states.device).expand(bsz) if not torch.is_tensor(k) or k.dim() == 0 else k
            rows = torch.arange(bsz, device=states.device)
            kk = k.clamp(min=0)
            own = torch.cat([states[rows, kk], actions[rows, kk]], dim=-1) * (k >= 0).unsqueeze(-1).to(states.dtype)
        return torch.cat([joint, own], dim=-1)

    # -------------------------------------------------------------- Q helpers
    def q_pairs(
        self,
        states: Tensor,
        actions: Tensor,
        b_index: Tensor,
        k_index: Tensor,
        shared: Tensor | None = None,
        hidden: list[Tensor] | None = None,
    ) -> Tensor:
        """Q of the rows ``(b_index[t], k_index[t])`` -> ``(T,)`` (``k = -1``: zero input).

        Differentiable w.r.t. the critic's parameters and ``states``/``actions``.
        ``shared`` may pass a precomputed :meth:`shared` ``(B, H)``.
        """
        if shared is None:
            shared = self.shared(states, actions)
        valid = k_index >= 0
        kk = k_index.clamp(min=0)
        own_x = torch.cat([states[b_index, kk], actions[b_index, kk]], dim=-1)
        own_x = own_x * valid.unsqueeze(-1).to(own_x.dtype)  # zero-input rows: own part exactly 0
        pre = shared[b_index] + F.linear(own_x, self.layers[0].weight[:, self.joint_dim :])
        return self.head(pre, hidden)

    def q_rows(self, states: Tensor, actions: Tensor, k_index: Tensor) -> Tensor:
        """Q of one chosen row per transition: ``k_index (B,)`` -> ``(B,)`` (``-1`` = zero input)."""
        return self.q_pairs(states, actions, torch.arange(states.shape[0], device=states.device), k_index)

    def q_zero(self, states: Tensor, actions: Tensor) -> Tensor:
        """Zero-input Q (own state and action replaced by zeros) -> ``(B,)``."""
        return self.head(self.shared(states, actions))

    def q_all(self, states: Tensor, actions: Tensor, rows_mask: Tensor | None = None) -> Tensor:
        """Q of every agent row ``(B, N)``; with ``rows_mask (B, N)`` only those rows are
        computed and the others are ``-inf``."""
        shared = self.shared(states, actions)
        if rows_mask is None:
            return self.head(shared.unsqueeze(1) + self.own(states, actions))
        b_index, k_index = rows_mask.nonzero(as_tuple=True)
        q = self.q_pairs(states, actions, b_index, k_index, shared=shared)
        out = q.new_full(rows_mask.shape, float("-inf"))
        return out.index_put((b_index, k_index), q)

    def q_max(self, states: Tensor, actions: Tensor, rows_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``max_k Q`` over the rows in ``rows_mask`` per transition, or the zero-input Q where
        the mask is empty. Returns ``(q (B,), k (B,))`` with ``k = -1`` for zero-input.

        The gradient of the max flows through the selected row only (as ``torch.max``).
        """
        q_all = self.q_all(states, actions, rows_mask)
        q_best, k_best = q_all.max(dim=1)
        has = rows_mask.any(dim=1)
        k_best = torch.where(has, k_best, torch.full_like(k_best, -1))
        if not bool(has.all()):
            q_best = torch.where(has, q_best, self.q_zero(states, actions))
        return q_best, k_best


# ============================================================ batch evaluation
def _spectral_norm_bound(w: Tensor) -> Tensor:
    """An upper bound on the largest singular value of ``w`` (eigvalsh of the small Gram
    matrix, with a relative margin for its rounding)."""
    gram = w @ w.t() if w.shape[0] <= w.shape[1] else w.t() @ w
    return torch.linalg.eigvalsh(gram)[-1].clamp_min(0).sqrt() * (1 + 1e-3) + 1e-30


class BatchCritic:
    """The online critic evaluated on one batch of states while the joint action changes.

    Holds the first-layer pieces that do not depend on the actions (computed once) and
    the current shared part ``shared (B, H)`` for the current actions (the own part of a
    row is computed for the rows evaluated only), and finds ``argmax_k Q`` over proposer
    rows without gradient.
    Everything here is detached: the critic is not trained by the actor losses.

    Row pruning (exact): Q is Lipschitz in the first-layer pre-activation h (ReLU and
    identity are 1-Lipschitz), ``|Q(h) - Q(h')| <= min(c . |h - h'|, L2 ||h - h'||)`` with
    ``c = |W_2|^T ... |W_L|^T |w_out|`` and ``L2 = ||w_out|| prod ||W_l||_2``. After one full
    evaluation of all proposer rows (the reference), a later call evaluates only the
    rows whose reference Q plus their drift bound can still reach the best lower bound
    of their transition; row (b, k) drifts with ``h_bk - h_ref_bk = (shared_b -
    shared_ref_b) + W_own_action (a_bk - a_ref_bk)``, and a relative rounding slack of
    64 eps of the row's sum |terms| is added (observed float32 rounding errors are
    below 4 eps of it). Rows that were not proposers at the reference are always
    evaluated; when more than half of the proposer rows remain, everything is
    evaluated again and becomes the new reference. The arg-max is the one the full
    evaluation finds (float near-ties within rounding aside, where any choice is as
    good as the reference's), and in the sequential actor loop, where one actor's
    actions change between passes, typically ~5% of the rows are evaluated.
    """

    FULL_FRACTION = 0.5  # re-evaluate everything when more than this share of proposer rows remain

    def __init__(self, critic: Critic, states: Tensor, prune: bool = True, cache: dict | None = None) -> None:
        self.critic = critic
        self.bsz, self.n, _ = states.shape
        self.prune = prune
        self.relu = critic.hidden_activation == "relu"
        rows = self.bsz * self.n
        # Work buffers, reused across updates through ``cache`` (large fresh allocations are slow).
        sizes = critic.sizes[1:]
        key = (rows, tuple(sizes), states.dtype)
        if cache is None:
            cache = {}
        if key not in cache:
            cache[key] = {
                "own_s": states.new_empty(rows, sizes[0]),
                "rows": [states.new_empty(rows, sizes[0])]
                + [states.new_empty(rows, h) for h in sizes[:-1]]
                + [states.new_empty(rows)],
            }
        self._buffers = cache[key]["rows"]
        with torch.no_grad():
            w_js, w_ja, w_os, w_oa, b1 = (t.detach() for t in critic.first_layer_split())
            self.w_ja_t = w_ja.t().contiguous()  # (N*A, H)
            self.w_oa_t = w_oa.t().contiguous()  # (A, H)
            self.adim = w_oa.shape[1]
            # (N, 2A, H): agent j's joint-action columns, then the own-action columns
            self.w_a = torch.cat([self.w_ja_t.view(self.n, self.adim, -1), self.w_oa_t.expand(self.n, self.adim, -1)], dim=1)
            self.w_a_t = self.w_a.transpose(1, 2).contiguous()  # (N, H, 2A): the same, for g_pre @ w_a[i]^T
            self.base = torch.addmm(b1, states.flatten(1), w_js.t())  # (B, H): joint-state part + bias
            own_s = torch.mm(states.view(rows, -1), w_os.t(), out=cache[key]["own_s"])
            self.own_s = own_s.view(self.bsz, self.n, -1)  # (B, N, H): own-state part of every row
            self._own_s_rows = own_s  # (B*N, H)
            if prune:
                self._lipschitz(critic, w_oa)
        self.shared: Tensor | None = None
        self.rows = torch.arange(self.bsz, device=states.device)
        self._row_base = self.rows * self.n  # flat index of row 0 of each transition
        self._evaluated: Tensor | None = None  # flat indices of the rows in the buffers (current actions)
        self.ref_q: Tensor | None = None  # (B, N) reference Q of proposer rows, -inf elsewhere
        self.n_evaluated = 0  # rows evaluated so far (for diagnostics)

    def _lipschitz(self, critic: Critic, w_oa: Tensor) -> None:
        """Constants of the drift bounds (see the class docstring)."""
        layers = critic.layers
        # 1-norm form: |Q(h) - Q(h')| <= c . |h - h'|, c = |W_2|^T ... |w_out|.
        c = layers[-1].weight.detach().abs().flatten()
        const = layers[-1].bias.detach().abs().sum()
        for layer in reversed(layers[1:-1]):
            const = const + c @ layer.bias.detach().abs()
            c = layer.weight.detach().abs().t() @ c
        self.c, self.c_a, self.const = c, w_oa.abs().t() @ c, const
        # 2-norm form (often tighter): ||w_out|| * prod ||W_l||_2 * ||h - h'||.
        lip2 = torch.linalg.vector_norm(layers[-1].weight.detach())
        for layer in layers[1:-1]:
            lip2 = lip2 * _spectral_norm_bound(layer.weight.detach())
        self.lip2, self.w_oa_norm = lip2, _spectral_norm_bound(w_oa)
        # Rounding slack relative to sum |terms| of Q (observed rounding errors stay below
        # ~4 eps of it; typical gaps between the best two rows are ~1e-4 of it).
        self.rel_slack = 64 * torch.finfo(c.dtype).eps

    @torch.no_grad()
    def set_actions(self, actions: Tensor) -> None:
        """Recompute the action-dependent parts for joint actions ``(B, N, A)``."""
        self.shared = torch.addmm(self.base, actions.flatten(1), self.w_ja_t)
        self._actions = actions.reshape(self.bsz * self.n, -1)  # own actions of the rows (B*N, A)
        self._evaluated = None

    @torch.no_grad()
    def set_action_column(self, j: int, actions: Tensor) -> None:
        """Agent ``j``'s actions changed (``actions`` is the full, updated ``(B, N, A)``).

        The own part of a row is computed for the rows evaluated only (:meth:`own_rows`), so
        only the shared part is refreshed here."""
        self.shared = torch.addmm(self.base, actions.flatten(1), self.w_ja_t)
        self._actions = actions.reshape(self.bsz * self.n, -1)
        self._evaluated = None

    def own_rows(self, flat_idx: Tensor, out: Tensor | None = None) -> Tensor:
        """Per-row part of layer 0 of rows ``flat_idx`` (into the ``B*N`` rows): own-state part
        + own action ``(M, H)`` (the same product for any subset of rows, so a row's value does
        not depend on which other rows are evaluated with it)."""
        return torch.addmm(self._own_s_rows.index_select(0, flat_idx), self._actions.index_select(0, flat_idx),
                           self.w_oa_t, out=out)

    def _q_rows(self, flat_idx: Tensor, want_scale: bool = False) -> tuple[Tensor, Tensor | None]:
        """Q of rows ``flat_idx`` (indices into the flattened ``(B*N)`` rows) for the current
        actions, computed in preallocated buffers (this is the hot loop); optionally also
        ``c . |act(h1)| + const``, a bound on the sum of |terms| of each Q (rounding scale).
        The rows' hidden activations stay in the buffers for :meth:`action_grad`."""
        m = flat_idx.numel()
        self.n_evaluated += m
        self._evaluated = flat_idx
        bufs = self._buffers
        pre = self.own_rows(flat_idx, out=bufs[0][:m])
        pre += torch.index_select(self.shared, 0, flat_idx // self.n, out=bufs[1][:m])
        h = pre.relu_() if self.relu else pre
        scale = (h.abs() @ self.c + self.const) if want_scale else None
        layers = self.critic.layers
        for j, layer in enumerate(layers[1:-1]):
            h = torch.addmm(layer.bias, h, layer.weight.t(), out=bufs[2 + j][:m])
            if self.relu:
                h.relu_()
        q = torch.addmv(layers[-1].bias, h, layers[-1].weight[0], out=bufs[-1][:m])
        return q, scale

    @torch.no_grad()
    def best_rows(self, actions: Tensor, proposers: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(k_best, has, q_best)`` (each ``(B,)``): arg-max and max of Q over proposer rows;
        ``has`` = any proposer (where it is False, k_best and q_best are meaningless).

        ``actions`` must be the joint actions last passed to ``set_actions``/``set_action_column``.
        """
        bsz, n = self.bsz, self.n
        q = self.shared.new_full((bsz * n,), float("-inf"))
        flat_idx = self._candidates(actions, proposers) if (self.prune and self.ref_q is not None) else None
        if flat_idx is not None:
            if flat_idx.numel():
                q.index_copy_(0, flat_idx, self._q_rows(flat_idx)[0])
        else:  # full evaluation of the proposer rows; it becomes the pruning reference
            flat_idx = proposers.view(-1).nonzero().squeeze(1)
            scale = self.shared.new_zeros(bsz * n)
            if flat_idx.numel():
                q_rows, scale_rows = self._q_rows(flat_idx, want_scale=self.prune)
                q.index_copy_(0, flat_idx, q_rows)
                if self.prune:
                    scale.index_copy_(0, flat_idx, scale_rows)
            if self.prune:
                self._set_reference(q.view(bsz, n), scale.view(bsz, n), actions, proposers)
        q_best, k_best = q.view(bsz, n).max(dim=1)
        return k_best, proposers.any(dim=1), q_best

    def _set_reference(self, q: Tensor, scale: Tensor, actions: Tensor, proposers: Tensor) -> None:
        """Remember a full evaluation as the reference of later pruned evaluations."""
        finite = bool(torch.isfinite(q[proposers]).all())
        self.ref_q = q.clone() if finite else None  # no pruning on non-finite values
        # rows unknown at the reference (not proposers then) are always candidates: +inf
        self.ref_q_hi = torch.where(proposers, q, float("inf"))
        self.ref_slack = self.rel_slack * scale
        self.ref_shared = self.shared.clone()
        self.ref_actions = actions.clone()

    def _candidates(self, actions: Tensor, proposers: Tensor) -> Tensor | None:
        """Flat indices (into the ``B*N`` rows, increasing) of the proposer rows that can still
        hold the max (``None``: evaluate everything). Written with few, in-place ops: this
        runs once per actor pass on small tensors, where each op's fixed cost dominates."""
        bsz, n = self.bsz, self.n
        d_shared = (self.shared - self.ref_shared).abs_()  # (B, H): |drift| of the shared part
        d_own = (actions - self.ref_actions).abs_()  # (B, N, A): nonzero in the actors updated since
        beta_1 = torch.mv(d_own.view(bsz * n, -1), self.c_a).view(bsz, n).add_(torch.mv(d_shared, self.c).unsqueeze(1))
        beta_2 = (torch.linalg.vector_norm(d_own, dim=2).mul_(self.w_oa_norm)
                  .add_(torch.linalg.vector_norm(d_shared, dim=1).unsqueeze(1)).mul_(self.lip2))
        margin = torch.minimum(beta_1, beta_2).add_(self.ref_slack)  # (B, N), >= 0 or NaN
        if not math.isfinite(margin.max()):  # (no -inf: the max is finite iff every margin is)
            return None
        # ref_q is -inf where the row was no proposer at the reference: no lower bound from it
        lower = torch.where(proposers, self.ref_q - margin, float("-inf")).amax(dim=1, keepdim=True)
        flat_idx = (self.ref_q_hi + margin >= lower).logical_and_(proposers).view(-1).nonzero().squeeze(1)
        if flat_idx.numel() > self.FULL_FRACTION * int(proposers.sum()):
            return None
        return flat_idx

    @torch.no_grad()
    def pre_rows(self, k_best: Tensor, has: Tensor) -> Tensor:
        """First-layer pre-activation of the chosen row per transition (zero input if none)."""
        own = self.own_rows(self._row_base + k_best.clamp(min=0))
        return torch.where(has.unsqueeze(1), self.shared + own, self.shared)

    def _chosen_hidden(self, k_best: Tensor, has: Tensor) -> list[Tensor] | None:
        """The hidden activations ``[act(h1), h2, ...]`` (each ``(B, H_l)``) of the chosen rows,
        gathered from the last row evaluation, or None where it does not hold them all (a
        transition without proposers, whose zero-input row is never evaluated, or actions
        changed since). The arg-max row of every transition is one of the rows evaluated
        for the current actions, so its forward need not be computed again; the values are
        the ones :meth:`Critic.head_vjp` would recompute (the same sums, as long as the
        matrix product's rounding does not depend on the number of rows)."""
        done = self._evaluated
        if done is None or not done.numel() or not bool(has.all()):
            return None
        flat = self._row_base + k_best
        pos = torch.searchsorted(done, flat).clamp_(max=done.numel() - 1)
        if not torch.equal(done.index_select(0, pos), flat):
            return None
        m = done.numel()
        bufs = self._buffers
        return [bufs[0][:m].index_select(0, pos)] + [b[:m].index_select(0, pos) for b in bufs[2:-1]]

    @torch.no_grad()
    def action_grad(self, i: int, k_best: Tensor, has: Tensor, grad_q: Tensor) -> tuple[Tensor, Tensor]:
        """``(q (B,), dL/da_i (B, A))`` for ``L = sum_b grad_q_b * q_b``, q_b = Q of row ``k_best_b``
        (zero input where not ``has``) at the current actions.

        Agent i's action enters every row of its transition through the joint-action columns
        and, if row i is the chosen row, also through the own-action columns: one backward
        pass through the critic's head on the B chosen rows (reusing their forward from
        :meth:`best_rows` where it holds it, :meth:`Critic.head_vjp` otherwise), then the first
        layer's action columns of agent i.
        """
        hidden = self._chosen_hidden(k_best, has)
        if hidden is None:
            q, g_pre = self.critic.head_vjp(self.pre_rows(k_best, has), grad_q)
        else:
            q, g_pre = self.critic.head_backward(hidden, grad_q)
        g_ja, g_own = torch.mm(g_pre, self.w_a_t[i]).split(self.adim, dim=1)
        own_row = k_best == i  # transitions whose chosen row is agent i's own
        if hidden is None:  # (with the forward reused, every transition has a chosen row)
            own_row &= has
        return q, torch.where(own_row.unsqueeze(1), g_ja + g_own, g_ja)
