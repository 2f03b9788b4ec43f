"""The numba kernels of the compiled engine (nopython, ``cache=True``, one thread).

Every kernel is generic over float32 and float64: numba compiles (and caches) one
version per dtype of the arrays it is called with. Scalars that enter the arithmetic
come in a small array ``hp`` of the arrays' dtype, so a float32 kernel computes in
float32 throughout (as torch does).

Layouts (those of the torch objects the engine works on in place):

* actor ``row (P,)``: for each layer ``W (in, out)`` then ``b (out,)`` (``ActorEnsemble``);
  ``aoff = [W0, b0, W1, b1, W2, b2]`` offsets, ``asz = [S, H1, H2, A]``;
* critic layer ``l``: ``nn.Linear`` weight ``(out, in)`` and bias ``(out,)``; layer 0's
  input is ``[joint states (N*S), joint actions (N*A), own state (S), own action (A)]``;
  ``tail (N*A + S + A, H1)`` is the transposed copy of layer 0's columns after the
  joint states (joint actions, own state, own action), made once per critic.

Speed rules (each cost 3-10x when broken): array views with their own shape instead
of an offset index inside a hot loop; the long dimension innermost (products in
outer-product form ``out[:] += x * W[k, :]`` or as contiguous dot products);
``fastmath`` (reassociation and contraction only, no NaN/inf assumptions: -inf marks
rows that are not proposers) so that reductions vectorise; contraction only where the written
order of a sum is the result (:func:`gemm_acc`). Comparisons (the arg-max)
are exact on the computed values; the first maximal row wins, as ``torch.max``.
"""

from __future__ import annotations

from . import prepare_numba

prepare_numba()  # the cache folder, before numba is imported

import numba as nb  # noqa: E402
import numpy as np  # noqa: E402

FASTMATH = {"reassoc", "contract", "nsz"}
jit = nb.njit(cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")
#: :func:`gemm_acc`'s flags: contraction (fused multiply-adds, as ``FASTMATH`` gives) without
#: reassociation, so the written order of each element's multiply-add chain is the computed one.
FASTMATH_CHAIN = FASTMATH - {"reassoc"}
jit_chain = nb.njit(cache=True, fastmath=FASTMATH_CHAIN, nogil=True, error_model="numpy")

TANH, SOFTSIGN, SCALED_SIGMOID = 0, 1, 2  # output activations (policies.OUTPUT_ACTIVATIONS)


# ================================================================== small pieces
@jit
def _dot(x, y):
    acc = x[0] * 0
    for j in range(x.shape[0]):
        acc += x[j] * y[j]
    return acc


@jit
def _squash(z, kind):
    if kind == TANH:
        return np.tanh(z)
    if kind == SOFTSIGN:
        return z / (1 + abs(z))
    return 2 / (1 + np.exp(-z)) - 1


@jit
def _squash_grad(g, a, kind):
    """``g * d squash / dz`` written with the output ``a`` (as ``policies.squash_grad``)."""
    if kind == TANH:
        return g * (1 - a * a)
    if kind == SOFTSIGN:
        d = 1 - abs(a)
        return g * (d * d)
    return g * ((1 - a * a) * 0.5)


@jit
def _views(row, aoff, asz):
    s, h1, h2, a = asz[0], asz[1], asz[2], asz[3]
    w0 = row[aoff[0]:aoff[0] + s * h1].reshape((s, h1))
    b0 = row[aoff[1]:aoff[1] + h1]
    w1 = row[aoff[2]:aoff[2] + h1 * h2].reshape((h1, h2))
    b1 = row[aoff[3]:aoff[3] + h2]
    w2 = row[aoff[4]:aoff[4] + h2 * a].reshape((h2, a))
    b2 = row[aoff[5]:aoff[5] + a]
    return w0, b0, w1, b1, w2, b2


# ================================================================== actors
@jit
def actor_forward(row, aoff, asz, x, relu, kind, h1, h2, z, act):
    """One actor (parameter ``row``) on ``x (M, S)``: hidden outputs ``h1 (M, H1)``,
    ``h2 (M, H2)``, pre-activations ``z (M, A)`` and actions ``act (M, A)``."""
    w0, b0, w1, b1, w2, b2 = _views(row, aoff, asz)
    m, s = x.shape
    n1, n2, na = b0.shape[0], b1.shape[0], b2.shape[0]
    for r in range(m):
        o1 = h1[r]
        o1[:] = b0
        for k in range(s):
            xv = x[r, k]
            wk = w0[k]
            for j in range(n1):
                o1[j] += xv * wk[j]
        if relu:
            for j in range(n1):
                if o1[j] < 0:
                    o1[j] = 0
        o2 = h2[r]
        o2[:] = b1
        for k in range(n1):
            xv = o1[k]
            if xv != 0:
                wk = w1[k]
                for j in range(n2):
                    o2[j] += xv * wk[j]
        if relu:
            for j in range(n2):
                if o2[j] < 0:
                    o2[j] = 0
        for c in range(na):
            acc = b2[c]
            for k in range(n2):
                acc += o2[k] * w2[k, c]
            z[r, c] = acc
            act[r, c] = _squash(acc, kind)


@jit
def actors_forward_all(flat, aoff, asz, states, relu, kind, h1, h2, z, act):
    """Every actor i on its own inputs ``states (B, N, S)`` -> ``h1 (N, B, H1)``, ``h2 (N, B, H2)``,
    ``z``, ``act`` ``(N, B, A)`` (the ensemble's layout: agent first)."""
    n = flat.shape[0]
    bsz = states.shape[0]
    x = np.empty((bsz, states.shape[2]), states.dtype)
    for i in range(n):
        for b in range(bsz):
            x[b] = states[b, i]
        actor_forward(flat[i], aoff, asz, x, relu, kind, h1[i], h2[i], z[i], act[i])


@jit
def actor_backward(row, aoff, asz, x, h1, h2, act, g_act, g_z_extra, relu, kind, grad, g_z, g2, g1):
    """Gradient ``grad (P,)`` of ``sum(g_act * act) + sum(g_z_extra * z)`` w.r.t. actor ``row``
    given its forward on ``x (B, S)`` (``h1``, ``h2``, ``act``); ``g_z``, ``g2``, ``g1`` are work
    buffers ``(B, A)``, ``(B, H2)``, ``(B, H1)``. Plain back-propagation (as
    ``ActorEnsemble.backward_agent``: squash' through the output, ReLU' = [output > 0])."""
    w0, b0, w1, b1, w2, b2 = _views(row, aoff, asz)
    d0, db0, d1, db1, d2, db2 = _views(grad, aoff, asz)
    bsz, s = x.shape
    n1, n2, na = b0.shape[0], b1.shape[0], b2.shape[0]
    for b in range(bsz):
        for c in range(na):
            g_z[b, c] = _squash_grad(g_act[b, c], act[b, c], kind) + g_z_extra[b, c]
    # output layer
    d2[:, :] = 0
    db2[:] = 0
    for b in range(bsz):
        for k in range(n2):
            hv = h2[b, k]
            for c in range(na):
                d2[k, c] += hv * g_z[b, c]
        for c in range(na):
            db2[c] += g_z[b, c]
    for b in range(bsz):
        for k in range(n2):
            acc = g_z[b, 0] * w2[k, 0]
            for c in range(1, na):
                acc += g_z[b, c] * w2[k, c]
            g2[b, k] = acc if (not relu or h2[b, k] > 0) else 0
    # hidden layer 2
    d1[:, :] = 0
    db1[:] = 0
    for b in range(bsz):
        gb = g2[b]
        for k in range(n1):
            hv = h1[b, k]
            if hv != 0:
                dk = d1[k]
                for j in range(n2):
                    dk[j] += hv * gb[j]
        for j in range(n2):
            db1[j] += gb[j]
    for b in range(bsz):
        gb = g2[b]
        for k in range(n1):
            if relu and h1[b, k] <= 0:
                g1[b, k] = 0
            else:
                g1[b, k] = _dot(w1[k], gb)
    # hidden layer 1
    d0[:, :] = 0
    db0[:] = 0
    for b in range(bsz):
        gb = g1[b]
        for k in range(s):
            xv = x[b, k]
            dk = d0[k]
            for j in range(n1):
                dk[j] += xv * gb[j]
        for j in range(n1):
            db0[j] += gb[j]


# ================================================================== Adam
@jit
def adam_step(p, g, m, v, hp):
    """One ``torch.optim.Adam`` step (single-tensor path, no weight decay) of the flat arrays
    ``p``, ``m``, ``v`` with gradient ``g``; ``hp = [neg_step_size, bc2_sqrt, 1 - beta1, beta2,
    1 - beta2, eps]`` (``neg_step_size = -lr / (1 - beta1^t)``, ``bc2_sqrt = sqrt(1 - beta2^t)``),
    each computed in double precision as torch does, then rounded to the dtype::

        m += (1 - beta1) * (g - m); v = v * beta2 + (1 - beta2) * g * g
        p += neg_step_size * m / (sqrt(v) / bc2_sqrt + eps)
    """
    neg_step, bc2, w1, beta2, w2, eps = hp[0], hp[1], hp[2], hp[3], hp[4], hp[5]
    for j in range(p.shape[0]):
        gj = g[j]
        mj = m[j] + w1 * (gj - m[j])
        vj = v[j] * beta2 + w2 * gj * gj
        m[j] = mj
        v[j] = vj
        p[j] += neg_step * mj / (np.sqrt(vj) / bc2 + eps)


@jit
def soft_update(target, online, tau, hard):
    """``target = (1 - tau) * target + tau * online`` on flat arrays (``hard``: an exact copy)."""
    if hard:
        target[:] = online
        return
    one_minus = 1 - tau
    for j in range(target.shape[0]):
        target[j] = target[j] * one_minus + online[j] * tau


@jit
def clip_row(g, max_norm, clip_eps):
    """``torch.nn.utils.clip_grad_norm_`` of one row in place: ``g *= min(1, max / (||g|| + eps))``."""
    norm = np.sqrt(_dot(g, g))
    coef = max_norm / (norm + clip_eps)
    if coef < 1:
        for j in range(g.shape[0]):
            g[j] = g[j] * coef


# ================================================================== critic rows
@jit_chain
def gemm_acc(a, w, out, m):
    """``out[:m] += a[:m] @ w`` (``a (M, K)``, ``w (K, C)``, ``out (M, C)``) four rows at a time, the
    long dimension ``C`` innermost (vectorised), bit for bit the plain outer-product loop
    ``for k: out[i, :] += a[i, k] * w[k, :]``.

    Every element is the same chain of multiply-adds ``out[i, j] = fma(a[i, k], w[k, j], out[i, j])``
    (fused where the CPU has FMA) for k = 0..K-1 in order, starting from ``out``'s value; a k where all four rows
    of a group have ``a[., k] == 0`` is skipped (rows after the last group of four: a k with
    ``a[i, k] == 0``). A row's sums therefore do not depend on the other rows evaluated (beyond
    its group of four, which :func:`head_rows` keeps fixed by zero padding).

    Speed: the k's the group uses are listed first, then taken four at a time, so each element
    of ``out`` is loaded and stored once per four k's (the four-term chain runs in registers);
    a single-k step per element was bound by those loads and stores (1.4-2x slower). Compiled
    without reassociation (:data:`FASTMATH_CHAIN`): the four-term chain must stay in order."""
    kdim = a.shape[1]
    ncol = w.shape[1]
    ks = np.empty(kdim, np.int64)  # the k's a group of four rows uses, in order
    r = 0
    while r + 4 <= m:
        n = 0
        for k in range(kdim):
            if a[r, k] != 0 or a[r + 1, k] != 0 or a[r + 2, k] != 0 or a[r + 3, k] != 0:
                ks[n] = k
                n += 1
        o0, o1, o2, o3 = out[r], out[r + 1], out[r + 2], out[r + 3]
        i = 0
        while i + 4 <= n:  # four k's (p, q, s, t) per load and store of out
            kp, kq, ks_, kt = ks[i], ks[i + 1], ks[i + 2], ks[i + 3]
            wp, wq, ws, wt = w[kp], w[kq], w[ks_], w[kt]
            p0, q0, s0, t0 = a[r, kp], a[r, kq], a[r, ks_], a[r, kt]
            p1, q1, s1, t1 = a[r + 1, kp], a[r + 1, kq], a[r + 1, ks_], a[r + 1, kt]
            p2, q2, s2, t2 = a[r + 2, kp], a[r + 2, kq], a[r + 2, ks_], a[r + 2, kt]
            p3, q3, s3, t3 = a[r + 3, kp], a[r + 3, kq], a[r + 3, ks_], a[r + 3, kt]
            for j in range(ncol):
                vp, vq, vs, vt = wp[j], wq[j], ws[j], wt[j]
                acc = o0[j]
                acc += p0 * vp
                acc += q0 * vq
                acc += s0 * vs
                acc += t0 * vt
                o0[j] = acc
                acc = o1[j]
                acc += p1 * vp
                acc += q1 * vq
                acc += s1 * vs
                acc += t1 * vt
                o1[j] = acc
                acc = o2[j]
                acc += p2 * vp
                acc += q2 * vq
                acc += s2 * vs
                acc += t2 * vt
                o2[j] = acc
                acc = o3[j]
                acc += p3 * vp
                acc += q3 * vq
                acc += s3 * vs
                acc += t3 * vt
                o3[j] = acc
            i += 4
        while i < n:  # the last (fewer than four) k's, one at a time
            k = ks[i]
            x0, x1, x2, x3 = a[r, k], a[r + 1, k], a[r + 2, k], a[r + 3, k]
            wk = w[k]
            for j in range(ncol):
                wj = wk[j]
                o0[j] += x0 * wj
                o1[j] += x1 * wj
                o2[j] += x2 * wj
                o3[j] += x3 * wj
            i += 1
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


@jit
def shared_parts(w0jt, b0, states, actions, shared):
    """Per-transition part of layer 0 (bias included) for joint ``states (B, N, S)`` and
    ``actions (B, N, A)`` -> ``shared (B, H1)``: ``b0 + W_joint [s_flat; a_flat]`` (``w0jt`` =
    the joint columns of layer 0, transposed: ``(N*(S+A), H1)``)."""
    bsz, n, s = states.shape
    a = actions.shape[2]
    js = n * s
    x = np.empty((bsz, w0jt.shape[0]), w0jt.dtype)
    for b in range(bsz):
        for k in range(n):
            for j in range(s):
                x[b, k * s + j] = states[b, k, j]
            for j in range(a):
                x[b, js + k * a + j] = actions[b, k, j]
        shared[b] = b0
    gemm_acc(x, w0jt, shared, bsz)


@jit
def head_rows(h1, m, w1t, b1, w2, b2, relu, h2, q):
    """:func:`head` of ``m`` rows whose first-layer pre-activations are in ``h1[:m]`` (replaced by
    their activations) -> ``h2[:m]``, ``q[:m]``. The buffers hold at least ``m`` rounded up to a
    multiple of 4 rows: the rows after ``m`` are zeroed, so every row goes through the same
    four-row code of :func:`gemm_acc` and its value never depends on how many rows are evaluated."""
    m4 = (m + 3) // 4 * 4
    for r in range(m, m4):
        h1[r] = 0
    m = m4
    for r in range(m):
        row = h1[r]
        if relu:
            for j in range(row.shape[0]):
                if row[j] < 0:
                    row[j] = 0
        h2[r] = b1
    gemm_acc(h1, w1t, h2, m)
    for r in range(m):
        row = h2[r]
        if relu:
            for j in range(row.shape[0]):
                if row[j] < 0:
                    row[j] = 0
        q[r] = b2[0] + _dot(row, w2[0])


@jit
def row_pre(shared_b, tail, na_joint, s_own, a_own, pre):
    """First-layer pre-activation of one agent row: ``shared_b + W_own [s_k; a_k]``."""
    pre[:] = shared_b
    sdim = s_own.shape[0]
    for j in range(sdim):
        xv = s_own[j]
        t = tail[na_joint + j]
        for h in range(pre.shape[0]):
            pre[h] += xv * t[h]
    for j in range(a_own.shape[0]):
        xv = a_own[j]
        t = tail[na_joint + sdim + j]
        for h in range(pre.shape[0]):
            pre[h] += xv * t[h]


@jit
def head(pre, w1, b1, w2, b2, relu, h1, h2):
    """The layers after the first: ``h1 = act(pre)``, ``h2 = act(W1 h1 + b1)``, returns
    ``q = w2 . h2 + b2``."""
    n1 = pre.shape[0]
    for j in range(n1):
        v = pre[j]
        h1[j] = v if (not relu or v > 0) else 0
    for j in range(w1.shape[0]):
        v = b1[j] + _dot(w1[j], h1)
        h2[j] = v if (not relu or v > 0) else 0
    return b2[0] + _dot(w2[0], h2)


@jit
def scale_of(h1, c, const):
    """``c . |h1| + const``: a bound on the sum of |terms| of Q (its rounding scale)."""
    acc = const
    for j in range(h1.shape[0]):
        acc += abs(h1[j]) * c[j]
    return acc


# ------------------------------------------------- critic-side rows (products done by BLAS)
# The critic update's large dense products (the shared part, the heads of every proposer row
# and of the loss terms, the weight gradients) are done by the engine with torch's BLAS on
# views of these kernels' arrays (``engine.CompiledEngine``); the kernels below do the
# per-row gathers, masks and reductions around them.
@jit
def joint_inputs(states, actions, x):
    """The joint input ``[s_flat; a_flat]`` of each transition -> ``x (B, N*(S+A))`` (the
    columns of layer 0 before the own state)."""
    bsz, n, s = states.shape
    a = actions.shape[2]
    js = n * s
    for b in range(bsz):
        for k in range(n):
            for j in range(s):
                x[b, k * s + j] = states[b, k, j]
            for j in range(a):
                x[b, js + k * a + j] = actions[b, k, j]


@jit
def proposer_rows(shared, tail, states, actions, h1, rb):
    """First-layer pre-activations of every proposer row (``a_bk[0] >= 0``), b-major, and of the
    zero-input row (``shared[b]``) of each transition without one -> ``h1[:m]``, their
    transitions ``rb[:m]``; returns ``m`` (``<= B*N``)."""
    bsz, n, _ = states.shape
    na_joint = n * actions.shape[2]
    m = 0
    for b in range(bsz):
        m0 = m
        for k in range(n):
            if actions[b, k, 0] >= 0:
                row_pre(shared[b], tail, na_joint, states[b, k], actions[b, k], h1[m])
                rb[m] = b
                m += 1
        if m == m0:
            h1[m] = shared[b]
            rb[m] = b
            m += 1
    return m


@jit
def max_per_transition(q, rb, q_out):
    """``q_out[b] = max`` of ``q`` over the rows of transition b (``rb`` sorted; every b has a
    row); the first maximal row wins, comparisons exact."""
    r = 0
    m = rb.shape[0]
    for b in range(q_out.shape[0]):
        best = q[r]
        r += 1
        while r < m and rb[r] == b:
            if q[r] > best:
                best = q[r]
            r += 1
        q_out[b] = best


@jit
def term_rows(shared, tail, states, actions, b_idx, k_idx, h1):
    """First-layer pre-activations of the rows ``(b_idx[t], k_idx[t])`` (``k = -1``: zero input,
    ``shared[b]``) -> ``h1[:T]``."""
    n = states.shape[1]
    na_joint = n * actions.shape[2]
    for t in range(b_idx.shape[0]):
        b, k = b_idx[t], k_idx[t]
        if k >= 0:
            row_pre(shared[b], tail, na_joint, states[b, k], actions[b, k], h1[t])
        else:
            h1[t] = shared[b]


@jit
def critic_backward_head(w2, relu, h2, g_q, g2, d2, db2, db1):
    """The output layer's gradients of ``sum_t g_q[t] * Q_t`` -> ``d2 (1, H2)``, ``db2 (1,)``,
    ``db1 (H2,)`` and the gradient at layer 1's pre-activation ``g2 (T, H2)`` (ReLU' applied)."""
    n2 = w2.shape[1]
    db2[0] = 0
    d2[0, :] = 0
    db1[:] = 0
    for t in range(g_q.shape[0]):
        gq = g_q[t]
        db2[0] += gq
        for j in range(n2):
            hv = h2[t, j]
            d2[0, j] += gq * hv
            gv = gq * w2[0, j] if (not relu or hv > 0) else 0
            g2[t, j] = gv
            db1[j] += gv


@jit
def critic_backward_first(relu, states, actions, b_idx, k_idx, h1, g1, g_joint, db0, x_own):
    """Layer 0's pieces: ``g1 (T, H1)`` masked by ReLU' in place, its per-transition sums
    ``g_joint (B, H1)`` (zeroed here; the joint input is shared by a transition's rows), ``db0``
    and each row's own input ``x_own (T, S+A)`` (zero for a zero-input row)."""
    s = states.shape[2]
    a = actions.shape[2]
    n1 = g1.shape[1]
    g_joint[:, :] = 0
    db0[:] = 0
    x_own[:, :] = 0
    for t in range(b_idx.shape[0]):
        row = g1[t]
        if relu:
            for k in range(n1):
                if h1[t, k] <= 0:
                    row[k] = 0
        gj = g_joint[b_idx[t]]
        for k in range(n1):
            gj[k] += row[k]
            db0[k] += row[k]
        kk = k_idx[t]
        if kk >= 0:
            for j in range(s):
                x_own[t, j] = states[b_idx[t], kk, j]
            for j in range(a):
                x_own[t, s + j] = actions[b_idx[t], kk, j]


# ================================================================== the actor loop
@jit
def actor_passes(states, weights, flat, m_act, v_act, adam_hp, aoff, asz, relu, kind, clip, preact_penalty,
                 w0, b0, tail, w1, b1, w2, b2, w1t, w0jt, lip, prune,
                 grads, losses, z0, h1_0, h2_0, k_log, n_eval):
    """The faithful sequential actor update (``ccm-madrl.md``, "Actor update"), in place.

    For i = 0..N-1: actor i-1's action column refreshed after its step; ``q_b = max`` over
    proposer rows (``a_bk[0] >= 0``) of the online critic, the zero-input row where there is
    none; ``loss_i = -(1/B) sum_b w_b q_b [+ preact_penalty * mean(z_i^2)]``; dL/da_i through
    the chosen rows (every row's joint action, the own action of row i); back-propagation
    through actor i; clipping (``clip > 0``); actor i's Adam step (``adam_hp[i] =
    [neg_step_size, bc2_sqrt, 1 - beta1, beta2, 1 - beta2, eps]``, see :func:`adam_step`).

    The arg-max uses the exact Lipschitz row pruning of ``critic.BatchCritic`` (``prune``):
    after a full evaluation of the proposer rows (the reference), a row whose reference Q
    plus its drift bound cannot reach its transition's best lower bound is skipped;
    ``lip = [lip2, w_oa_norm, const, rel_slack, c_a (A), c (H1)]``.

    Outputs: ``grads (N, P)`` (before clipping), ``losses (N,)``, the actors' forward at the
    start ``z0 (N, B, A)``, ``h1_0``, ``h2_0``; ``k_log (N, B)`` the chosen row of every pass
    (-1: zero input); ``n_eval[0]`` += the critic rows evaluated (diagnostics, benchmarks).
    """
    bsz, n, sdim = states.shape
    adim = asz[3]
    n1c, n2c = w0.shape[0], w1.shape[0]
    na_joint = n * adim
    dt = flat.dtype
    # ---- actors at the start: actions, pre-activations, hidden (agent-first layout)
    act_nb = np.empty((n, bsz, adim), dt)
    actors_forward_all(flat, aoff, asz, states, relu, kind, h1_0, h2_0, z0, act_nb)
    actions = np.empty((bsz, n, adim), dt)
    for i in range(n):
        for b in range(bsz):
            for c in range(adim):
                actions[b, i, c] = act_nb[i, b, c]
    shared = np.empty((bsz, n1c), dt)
    shared_parts(w0jt, b0, states, actions, shared)
    # pruning state
    lip2, w_oa_norm, const, rel_slack = lip[0], lip[1], lip[2], lip[3]
    c_a = lip[4:4 + adim]
    cvec = lip[4 + adim:]
    ref_valid = False
    ref_q = np.empty((bsz, n), dt)
    ref_hi = np.empty((bsz, n), dt)
    ref_slack = np.empty((bsz, n), dt)
    ref_shared = np.empty((bsz, n1c), dt)
    ref_actions = np.empty((bsz, n, adim), dt)
    margin = np.empty((bsz, n), dt)
    cand = np.zeros((bsz, n), np.bool_)
    qrow = np.empty((bsz, n), dt)
    # the rows evaluated in a pass (b-major, k increasing) and their forward
    rows_h1 = np.empty((bsz * n + 3, n1c), dt)  # (+3: head_rows pads to whole blocks of four)
    rows_h2 = np.empty((bsz * n + 3, n2c), dt)
    rows_q = np.empty(bsz * n + 3, dt)
    rows_b = np.empty(bsz * n, np.int64)
    rows_k = np.empty(bsz * n, np.int64)
    zero_h1 = np.empty((bsz, n1c), dt)  # zero-input rows (transitions without proposers)
    zero_h2 = np.empty((bsz, n2c), dt)
    m_best = np.empty(bsz, np.int64)
    q_best = np.empty(bsz, dt)
    k_best = np.empty(bsz, np.int64)
    g1m = np.empty((bsz, n1c), dt)
    g2m = np.empty((bsz, n2c), dt)
    # actor work buffers
    x_i = np.empty((bsz, sdim), dt)
    g_a = np.empty((bsz, adim), dt)
    g_zx = np.zeros((bsz, adim), dt)
    g_z = np.empty((bsz, adim), dt)
    g2a = np.empty((bsz, asz[2]), dt)
    g1a = np.empty((bsz, asz[1]), dt)
    h1n = np.empty((bsz, asz[1]), dt)
    h2n = np.empty((bsz, asz[2]), dt)
    zn = np.empty((bsz, adim), dt)
    an = np.empty((bsz, adim), dt)
    gstep = np.empty(flat.shape[1], dt)
    zero = np.zeros(1, dt)[0]
    for i in range(n):
        if i > 0:  # actor i-1 has stepped: refresh its action column, rank-A update of shared
            j = i - 1
            for b in range(bsz):
                x_i[b] = states[b, j]
            actor_forward(flat[j], aoff, asz, x_i, relu, kind, h1n, h2n, zn, an)
            for b in range(bsz):
                sb = shared[b]
                for c in range(adim):
                    d = an[b, c] - actions[b, j, c]
                    if d != 0:
                        t = tail[j * adim + c]
                        for h in range(n1c):
                            sb[h] += d * t[h]
                    actions[b, j, c] = an[b, c]
        # ---- candidates (exact pruning) or a full evaluation of the proposer rows
        full = (not prune) or (not ref_valid)
        if not full:
            n_prop = 0
            n_cand = 0
            for b in range(bsz):
                ds1 = zero
                ds2 = zero
                for h in range(n1c):
                    d = abs(shared[b, h] - ref_shared[b, h])
                    ds1 += d * cvec[h]
                    ds2 += d * d
                ds2 = np.sqrt(ds2)
                lower = -np.inf
                for k in range(n):
                    do1 = zero
                    do2 = zero
                    for c in range(adim):
                        d = abs(actions[b, k, c] - ref_actions[b, k, c])
                        do1 += d * c_a[c]
                        do2 += d * d
                    beta1 = do1 + ds1
                    beta2 = (np.sqrt(do2) * w_oa_norm + ds2) * lip2
                    mg = min(beta1, beta2) + ref_slack[b, k]
                    if not np.isfinite(mg):
                        full = True
                    margin[b, k] = mg
                    if actions[b, k, 0] >= 0:
                        n_prop += 1
                        lo = ref_q[b, k] - mg
                        if lo > lower:
                            lower = lo
                for k in range(n):
                    ok = actions[b, k, 0] >= 0 and ref_hi[b, k] + margin[b, k] >= lower
                    cand[b, k] = ok
                    if ok:
                        n_cand += 1
            if n_cand > 0.5 * n_prop:
                full = True
        # ---- evaluate the rows (all proposer rows, or the candidates), keep the first maximal one
        m = 0
        for b in range(bsz):
            for k in range(n):
                if actions[b, k, 0] >= 0 and (full or cand[b, k]):
                    row_pre(shared[b], tail, na_joint, states[b, k], actions[b, k], rows_h1[m])
                    rows_b[m] = b
                    rows_k[m] = k
                    m += 1
        head_rows(rows_h1, m, w1t, b1, w2, b2, relu, rows_h2, rows_q)
        n_eval[0] += m
        r = 0
        for b in range(bsz):
            found = False
            best = -np.inf
            while r < m and rows_b[r] == b:
                q = rows_q[r]
                if full:
                    k = rows_k[r]
                    qrow[b, k] = q
                    ref_slack[b, k] = rel_slack * scale_of(rows_h1[r], cvec, const)
                if not found or q > best:
                    best = q
                    m_best[b] = r
                    found = True
                r += 1
            if found:
                k_best[b] = rows_k[m_best[b]]
            else:  # no proposer: the zero-input row
                k_best[b] = -1
                best = head(shared[b], w1, b1, w2, b2, relu, zero_h1[b], zero_h2[b])
            q_best[b] = best
        if full and prune:  # the new reference
            ref_valid = True
            for b in range(bsz):
                ref_shared[b] = shared[b]
                for k in range(n):
                    for c in range(adim):
                        ref_actions[b, k, c] = actions[b, k, c]
                    if actions[b, k, 0] >= 0:
                        if not np.isfinite(qrow[b, k]):
                            ref_valid = False
                        ref_q[b, k] = qrow[b, k]
                        ref_hi[b, k] = qrow[b, k]
                    else:
                        ref_q[b, k] = -np.inf
                        ref_hi[b, k] = np.inf
                        ref_slack[b, k] = 0
        # ---- dL/da_i through the chosen rows: loss_i = sum_b gq_b q_b, gq_b = -w_b / B
        loss = zero
        for b in range(bsz):
            gq = -weights[b] / bsz
            loss += gq * q_best[b]
            h2b = rows_h2[m_best[b]] if k_best[b] >= 0 else zero_h2[b]
            for j in range(n2c):
                g2m[b, j] = gq * w2[0, j] if (not relu or h2b[j] > 0) else 0
            g1m[b] = 0
        gemm_acc(g2m, w1, g1m, bsz)  # the chosen rows' d/d pre-activation, before ReLU'
        for b in range(bsz):
            h1b = rows_h1[m_best[b]] if k_best[b] >= 0 else zero_h1[b]
            g1 = g1m[b]
            if relu:
                for h in range(n1c):
                    if h1b[h] <= 0:
                        g1[h] = 0
            own = k_best[b] == i
            for c in range(adim):
                v = _dot(g1, tail[i * adim + c])
                if own:
                    v += _dot(g1, tail[na_joint + sdim + c])
                g_a[b, c] = v
            k_log[i, b] = k_best[b]
        # ---- actor i: backward through its start-of-update forward, clip, Adam step
        if preact_penalty != 0:  # + c * mean(z^2): dz = 2 c z / (B A)
            coef = 2 * preact_penalty / (bsz * adim)
            reg = zero
            for b in range(bsz):
                for c in range(adim):
                    zv = z0[i, b, c]
                    g_zx[b, c] = zv * coef
                    reg += zv * zv
            loss += preact_penalty * (reg / (bsz * adim))
        for b in range(bsz):
            x_i[b] = states[b, i]
        actor_backward(flat[i], aoff, asz, x_i, h1_0[i], h2_0[i], act_nb[i], g_a, g_zx, relu, kind,
                       grads[i], g_z, g2a, g1a)
        losses[i] = loss
        gstep[:] = grads[i]
        if clip > 0:
            clip_row(gstep, clip, 1e-6)
        adam_step(flat[i], gstep, m_act[i], v_act[i], adam_hp[i])
