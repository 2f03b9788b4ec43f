"""The compiled engine's product kernel ``kernels.gemm_acc`` is bit for bit the plain loop.

Every number of the compiled engine (the critic rows of the actor passes, the shared part of
layer 0, the chosen rows' backward) goes through ``gemm_acc``, and the engine's tests (pruned
equals unpruned, the reference comparisons) rely on its exact per-element order: ``out[i, j]``
accumulates ``a[i, k] * w[k, j]`` for k = 0..K-1 in order as fused multiply-adds, starting
from ``out``'s value, skipping a k where all four rows of a group have ``a[., k] == 0`` (the
last ``m % 4`` rows: where their own ``a[i, k] == 0``). The reference here is a copy of the
outer-product loop the engine used before the faster kernel (one k per load and store of
``out``), compiled with the kernels' own flags; the comparisons are ``np.array_equal`` on the
bits. A copy that runs k backwards is the negative control.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest
import reference

from gradasym.algos.ccm_madrl.compiled import kernels

# (K, C) of the engine's products: shared part of layer 0 (N*(S+A) = 510 or 512 joint inputs ->
# H1 = 512), the head's layer 1 (512 -> 128), the chosen rows' backward (128 -> 512), and an
# odd size whose C is not a multiple of any vector width
SHAPES = [(510, 512), (512, 128), (128, 512), (13, 19)]
ROWS = [1, 3, 4, 5, 64, 301]
exact = nb.njit(cache=False, fastmath=kernels.FASTMATH, nogil=True, error_model="numpy")


#: the engine's gemm_acc before its four-k form, compiled with the engine's flags: the bitwise reference
gemm_acc_loop = exact(reference.gemm_acc_loop)


@exact
def gemm_acc_reversed(a, w, out, m):
    """Negative control: the same products summed with k running backwards."""
    kdim = a.shape[1]
    ncol = w.shape[1]
    for r in range(m):
        o = out[r]
        for k in range(kdim - 1, -1, -1):
            x = a[r, k]
            if x != 0:
                wk = w[k]
                for j in range(ncol):
                    o[j] += x * wk[j]


def operands(rng: np.random.Generator, m: int, kdim: int, ncol: int, dtype) -> tuple[np.ndarray, ...]:
    """``a`` like the engine's: post-ReLU rows (about half exact zeros), a zero column every 7th k,
    a whole zero row, a group of four rows with a common zero column, signed zeros; ``w`` and
    the starting ``out`` (a bias) of mixed sign and scale."""
    a = rng.standard_normal((m, kdim))
    a[a < 0] = 0
    a[:, ::7] = 0
    if m > 1:
        a[1] = 0
    if m >= 8:
        a[4:8, 3] = 0
        a[6, 5] = -0.0
    w = rng.standard_normal((kdim, ncol)) * np.exp(rng.uniform(-3, 3, (kdim, 1)))
    out = rng.standard_normal((m, ncol))
    return a.astype(dtype), w.astype(dtype), out.astype(dtype)


def run(kernel, a: np.ndarray, w: np.ndarray, out: np.ndarray, m: int) -> np.ndarray:
    res = out.copy()
    kernel(a, w, res, m)
    return res


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kdim, ncol", SHAPES)
def test_gemm_acc_is_bitwise_the_plain_loop(dtype, kdim, ncol):
    rng = np.random.default_rng(kdim * 1000 + ncol)
    for m in ROWS:
        a, w, out = operands(rng, m, kdim, ncol, dtype)
        new, ref = run(kernels.gemm_acc, a, w, out, m), run(gemm_acc_loop, a, w, out, m)
        assert np.array_equal(new.view(np.uint8), ref.view(np.uint8)), (m, kdim, ncol)
        # only the first m rows are touched, a row's value does not depend on the rows after its group
        part = m // 4 * 4
        if 0 < part < m:
            head = run(kernels.gemm_acc, a, w, out, part)
            assert np.array_equal(head[:part].view(np.uint8), new[:part].view(np.uint8))
            assert np.array_equal(head[part:], out[part:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_acc_on_strided_views_and_nonfinite_values(dtype):
    """The engine hands over views (rows of larger buffers, ``w`` a view of a parameter); an inf in
    ``w`` must give NaN exactly where the plain loop gives it (a 0 * inf of a k that is not skipped)."""
    rng = np.random.default_rng(7)
    a, w, out = operands(rng, 12, 40, 24, dtype)
    big = np.zeros((16, 48), dtype)
    big[:12, 8:32] = out
    w[5, 3] = np.inf
    w[9, 10] = -np.inf
    new = big.copy()
    kernels.gemm_acc(a, w, new[:12, 8:32], 12)
    ref = big.copy()
    gemm_acc_loop(a, w, ref[:12, 8:32], 12)
    assert np.array_equal(new.view(np.uint8), ref.view(np.uint8))
    assert np.isnan(new).any()


def test_head_rows_is_bitwise_the_plain_loop():
    """``head_rows`` (the actor passes' critic rows) through the new kernel, inlined there, gives
    the second hidden layer of the plain loop, in float32 at the paper's critic sizes (512 -> 128;
    ``q`` is the unchanged reduction over that layer)."""
    rng = np.random.default_rng(3)
    m, n1, n2 = 37, 512, 128
    dt = np.float32
    pre = rng.standard_normal((40, n1)).astype(dt)
    w1t = (rng.standard_normal((n1, n2)) / 20).astype(dt)
    b1, w2 = rng.standard_normal(n2).astype(dt), (rng.standard_normal((1, n2)) / 10).astype(dt)
    b2 = rng.standard_normal(1).astype(dt)
    h1, h2, q = pre.copy(), np.empty((40, n2), dt), np.empty(40, dt)
    kernels.head_rows(h1, m, w1t, b1, w2, b2, True, h2, q)
    ref_h1 = np.maximum(pre, 0)
    ref_h1[m:] = 0
    ref_h2 = np.broadcast_to(b1, (40, n2)).copy()
    gemm_acc_loop(ref_h1, w1t, ref_h2, 40)
    ref_h2 = np.maximum(ref_h2, 0)
    assert np.array_equal(h2[:m].view(np.uint8), ref_h2[:m].view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_control_another_summation_order_is_detected(dtype):
    """The bitwise comparison is not vacuous: the same sums with k reversed differ in the bits
    (while agreeing to rounding)."""
    rng = np.random.default_rng(11)
    a, w, out = operands(rng, 64, 512, 128, dtype)
    new, rev = run(kernels.gemm_acc, a, w, out, 64), run(gemm_acc_reversed, a, w, out, 64)
    assert not np.array_equal(new.view(np.uint8), rev.view(np.uint8))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(new, rev, rtol=tol, atol=tol * np.abs(new).max())
