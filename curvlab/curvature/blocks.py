"""Exact per-layer diagonal blocks of the Hessian and the GGN (Botev, Ritter & Barber 2017).

Per sample, the Hessian with respect to the pre-activations s_l obeys the recursion
    H_{L} = B = ∂²ℓ/∂z²,
    H_{l} = diag(f'_l) W_{l+1}ᵀ H_{l+1} W_{l+1} diag(f'_l) + diag(f''_l ⊙ ∂ℓ/∂a_l),
(the GGN drops the last term). Since s_l = W̄_l ā_l is linear in W̄_l, the layer's block in the
row-major flat layout is exactly (1/N) Σₙ H_{l,n} ⊗ ā_{l,n} ā_{l,n}ᵀ — a sum of Kronecker
products, which K-FAC, KFLR and KFRA approximate by one Kronecker product.
"""

import numpy as np

from .._checks import check_dense
from ..problem import require_problem
from .products import _Point


def pre_activation_hessians(pt, exact=True):
    """Per-sample H_l (N, n_l, n_l) for every layer; exact=False gives the GGN's G_l."""
    Hs = [None] * len(pt.Wbars)
    H = pt.B
    for l in reversed(range(len(pt.Wbars))):
        Hs[l] = H
        if l:
            W = pt.Wbars[l][:, :-1]
            fp = pt.tr.fp[l - 1]
            H = fp[:, :, None] * (W.T @ H @ W) * fp[:, None, :]
            if exact:
                dfda = pt.deltas[l] @ W                          # ∂ℓ/∂a_{l-1}, per sample
                H = H + np.einsum("ni,ij->nij", pt.tr.fpp[l - 1] * dfda, np.eye(W.shape[1]))
    return Hs


def kron_average(H, abar):
    """(1/N) Σₙ Hₙ ⊗ āₙāₙᵀ as one matrix product: (n·(m+1), n·(m+1))."""
    N, n, _ = H.shape
    m1 = abar.shape[1]
    AA = np.einsum("ni,nj->nij", abar, abar).reshape(N, -1)
    T = (H.reshape(N, -1).T @ AA / N).reshape(n, n, m1, m1)
    return T.transpose(0, 2, 1, 3).reshape(n * m1, n * m1)


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
