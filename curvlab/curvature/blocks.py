"""Exact per-layer diagonal blocks of the Hessian and the GGN (Botev, Ritter & Barber 2017).

Per sample, the Hessian with respect to the pre-activations s_l obeys the recursion
    H_{L} = B = ∂²ℓ/∂z²,
    H_{l} = diag(f'_l) W_{l+1}ᵀ H_{l+1} W_{l+1} diag(f'_l) + diag(f''_l ⊙ ∂ℓ/∂a_l),
(the GGN drops the last term). Since s_l = W̄_l ā_l is linear in W̄_l, the layer's block in the
row-major flat layout is exactly (1/N) Σₙ H_{l,n} ⊗ ā_{l,n} ā_{l,n}ᵀ — a sum of Kronecker
products, which K-FAC, KFLR and KFRA approximate by one Kronecker product. The same per-sample
H_l give the off-diagonal blocks too (`dense_from_layers`, the fast dense Hessian and GGN):
each block is one matrix product with inner dimension N.
"""

import numpy as np
from tqdm.auto import tqdm

from .._checks import check_dense
from ..problem import require_problem
from ._dense import _CHUNK_BYTES, chunk_size
from .products import _Point


def pre_activation_hessians(pt, exact=True, top=None):
    """Per-sample H_l (N, n_l, n_l) for every layer; exact=False gives the GGN's G_l. top: the
    output curvature to start from (default B = ∂²ℓ/∂z²; the true Fisher passes E[∇ℓ∇ℓᵀ])."""
    Hs = [None] * len(pt.Wbars)
    H = pt.B if top is None else top
    for l in reversed(range(len(pt.Wbars))):
        Hs[l] = H
        if l:
            W = pt.Wbars[l][:, :-1]
            fp = pt.tr.fp[l - 1]
            H = fp[:, :, None] * (W.T @ H @ W) * fp[:, None, :]
            if exact:
                dfda = pt.deltas[l] @ W                          # ∂ℓ/∂a_{l-1}, per sample
                np.einsum("nii->ni", H)[...] += pt.tr.fpp[l - 1] * dfda    # a view of the diagonals
    return Hs


def strided_block(out, rows, cols, shape):
    """The sub-block out[rows, cols] as a 4-D *view* of the given shape (never a copy)."""
    view = out[rows, cols].reshape(shape)
    if not np.shares_memory(view, out):                    # reshape copied: writes would be lost
        raise AssertionError("internal error: block view is a copy")
    return view


def khatri_rao_into(block, A, abar_l, abar_m, cap=None):
    """block[i, j, i', j'] = Σₙ Aₙ[i, i'] ā_{l,n}[j] ā_{m,n}[j'], i.e. Σₙ Aₙ ⊗ ā_{l,n} ā_{m,n}ᵀ.

    One matrix product with inner dimension N: A as ((i, i'), n) times the row-wise Khatri-Rao
    product (n, (j, j')), then a permuted copy into `block` (n_l, m_l+1, n_m, m_m+1).
    Cost N·n_l·n_m·(m_l+1)·(m_m+1) multiply-adds; working memory at most one chunk of rows
    (at most `cap` bytes, if given).
    """
    N, n_l, n_m = A.shape
    a_l, a_m = abar_l.shape[1], abar_m.shape[1]
    KR = (abar_l[:, :, None] * abar_m[:, None, :]).reshape(N, a_l * a_m)
    step = chunk_size(8 * n_m * a_l * a_m, n_l, cap)
    for i0 in range(0, n_l, step):
        Ai = A[:, i0:i0 + step].reshape(N, -1)
        R = (Ai.T @ KR).reshape(-1, n_m, a_l, a_m)                   # (i, i', j, j')
        block[i0:i0 + step] = R.transpose(0, 2, 1, 3)


def kron_average(H, abar):
    """(1/N) Σₙ Hₙ ⊗ āₙāₙᵀ as one matrix product: (n·(m+1), n·(m+1))."""
    N, n, _ = H.shape
    m1 = abar.shape[1]
    out = np.empty((n * m1, n * m1))
    khatri_rao_into(out.reshape(n, m1, n, m1), H / N, abar, abar)
    return out


def _blocks(problem, w, exact, name):
    pt = _Point(require_problem(problem, name), w)
    for layer in pt.problem.model.layers:
        check_dense(f"{name} block", layer.size, alternative="cl.kflr(problem, w) (Kronecker factors)")
    blocks = []
    for H, ab in zip(pre_activation_hessians(pt, exact), pt.tr.abar):
        Bl = kron_average(H, ab)
        Bl[np.diag_indices_from(Bl)] += pt.l2
        blocks.append(Bl)
    return blocks


def hessian_blocks(problem, w):
    """Exact per-layer diagonal Hessian blocks [(size_l, size_l)] by the Botev recursion."""
    return _blocks(problem, w, True, "hessian_blocks")


def ggn_blocks(problem, w):
    """Exact per-layer diagonal GGN blocks, by the same recursion without the f'' term."""
    return _blocks(problem, w, False, "ggn_blocks")


def dense_from_layers(name, pt, exact, progress=None, top=None):
    """The whole (P, P) Hessian (exact=True) or GGN (exact=False; with `top`, the GGN of that
    output curvature, e.g. the true Fisher), block (l, m) by block.

    Block (l ≥ m) is (1/N) Σₙ (H_l T_{l←m})ₙ ⊗ ā_{l,n} ā_{m,n}ᵀ with T_{l←m} = ∂s_l/∂s_m, plus,
    for the Hessian, the term where W̄_l meets its input a_{l-1}(W̄_m) (see hessian.py). The
    upper blocks are mirrored, the diagonal blocks made exactly symmetric, λI added.
    """
    model, tr, N = pt.problem.model, pt.tr, pt.N
    P, n, L = model.n_params, model.sizes, len(model.layers)
    per_sample = sum(k * k for k in n[1:]) + 3 * max(a * b for a in n[1:] for b in n[1:]) \
        + max(a * b for a in n[:-1] for b in n[:-1]) + 4 * max(n)
    # Working blocks get a quarter of the matrix, an eighth when the per-sample arrays (which
    # grow with N, not P) already take an eighth: the peak stays near twice the matrix.
    cap = 2 * P * P if 8 * N * per_sample < P * P else P * P
    check_dense(name, P, extra_bytes=8 * N * per_sample + min(_CHUNK_BYTES, cap))
    Hs = pre_activation_hessians(pt, exact, top)
    Hs[-1] = Hs[-1] / N                         # the output curvature is the caller's: not in place
    for H in Hs[:-1]:
        H /= N
    deltas = [d / N for d in pt.deltas] if exact else None
    sl = model.layer_slices()
    shapes = [(layer.n_out, layer.n_in + 1) for layer in model.layers]
    out = np.empty((P, P))
    pairs = [(l, m) for m in range(L) for l in range(m, L)]
    show = progress if progress is not None else N * P * P > 1e11      # about 3 s of products
    bar = tqdm(total=len(pairs), desc=name, disable=not show, leave=False)
    for m in range(L):
        T = None                                  # ∂s_l/∂s_m per sample; None while l = m (T = I)
        for l in range(m, L):
            block = strided_block(out, sl[l], sl[m], shapes[l] + shapes[m])
            if l == m:
                khatri_rao_into(block, Hs[m], tr.abar[m], tr.abar[m], cap)
            else:
                W = pt.Wbars[l][:, :-1]
                D = None if T is None else tr.fp[l - 1][:, :, None] * T   # ∂a_{l-1}/∂s_m
                T = W * tr.fp[m][:, None, :] if D is None else W @ D
                khatri_rao_into(block, Hs[l] @ T, tr.abar[l], tr.abar[m], cap)
                if exact and D is None:
                    _add_input_term_diagonal(block, deltas[l], tr.fp[m], tr.abar[m])
                elif exact:
                    _add_input_term(block, deltas[l], D, tr.abar[m], cap)
                _mirror(out, sl[l], sl[m])
            bar.update()
    bar.close()
    _symmetrise_diagonal_blocks(out, sl)
    out[np.diag_indices(P)] += pt.l2
    return out


def _add_input_term(block, delta, D, abar_m, cap):
    """block[i, j, i', j'] += Σₙ δₙ[i] Dₙ[j, i'] ā_{m,n}[j'] over the input units j (not the
    bias): one product ((j, i'), n) × (n, (i, j')) per chunk of j."""
    N, n_in, n_m = D.shape
    KR = (delta[:, :, None] * abar_m[:, None, :]).reshape(N, -1)       # (n, (i, j'))
    n_l, a_m = delta.shape[1], abar_m.shape[1]
    inputs = block[:, :-1]
    step = chunk_size(8 * n_m * n_l * a_m, n_in, cap)
    for j0 in range(0, n_in, step):
        R = D[:, j0:j0 + step].reshape(N, -1).T @ KR                  # ((j, i'), (i, j'))
        inputs[:, j0:j0 + step] += R.reshape(-1, n_m, n_l, a_m).transpose(2, 0, 1, 3)


def _add_input_term_diagonal(block, delta, fp_m, abar_m):
    """The same for l = m + 1, where ∂a_m/∂s_m = diag(f'_m): only entries with j = i'."""
    N, n_m = fp_m.shape
    C = ((fp_m[:, :, None] * delta[:, None, :]).reshape(N, -1).T @ abar_m)   # ((j, i), j')
    C = C.reshape(n_m, delta.shape[1], -1).transpose(1, 0, 2)                  # (i, j, j')
    diagonal = np.einsum("ijjk->ijk", block[:, :-1])      # a writeable view of block[i, j, j, j']
    diagonal += C


def _mirror(out, rows, cols, tile=256):
    """out[cols, rows] = out[rows, cols]ᵀ, tile by tile (one whole-block assignment would make
    numpy copy the block first: source and target share a buffer)."""
    for r in range(rows.start, rows.stop, tile):
        r1 = min(r + tile, rows.stop)
        out[cols, r:r1] = out[r:r1, cols].T


def _symmetrise_diagonal_blocks(out, slices, tile=256):
    """Make each diagonal block exactly symmetric, (B + Bᵀ)/2 tile by tile in place: the
    products for (i, i') and (i', i) agree only to rounding on some BLAS builds."""
    for s in slices:
        B = out[s, s]
        for r in range(0, B.shape[0], tile):
            for c in range(r, B.shape[0], tile):
                upper, lower = B[r:r + tile, c:c + tile], B[c:c + tile, r:r + tile]
                mean = 0.5 * (upper + lower.T)
                upper[...] = mean
                lower[...] = mean.T
