"""Shampoo as a curvature matrix (Gupta, Koren & Singer 2018).

From the per-sample gradient matrices Gₙ of each layer's W̄ (n × (m+1), the data labels' ∇ℓₙ),
    L = (1/N) Σₙ Gₙ Gₙᵀ,   R = (1/N) Σₙ Gₙᵀ Gₙ,
the kind is (L + εI)^p ⊗ (R + εI)^p in the row-major layout, whose inverse applied to a gradient
matrix is Shampoo's preconditioned step L^{-p} G R^{-p}. p = 1/4 is the paper's; p = 1/2 is the
power at which later analysis (Morwani et al. 2024) relates Shampoo's factors to the optimal
Kronecker approximation of the empirical Fisher. ε (default 0) is added to L and R before the
power. Differences from the optimiser: Shampoo accumulates L_t = Σ_s g_s g_sᵀ over training steps
from mini-batch gradients; this is one point's statistic, averaged over the per-sample gradients.
"""

import numpy as np

from .._checks import nonnegative
from .ekfac import _chain_point, gradient_matrices
from .kfac import KroneckerFactored
from .registry import register


def _power(M, p, eps):
    lam, U = np.linalg.eigh(M + eps * np.eye(len(M)))
    return (U * np.maximum(lam, 0.0) ** p) @ U.T


def shampoo(problem, w, power=0.25, eps=0.0):
    """Shampoo's L^p ⊗ R^p (module docstring). Cost: one backprop for the per-sample gradients
    and two small eigendecompositions per layer."""
    power, eps = float(power), nonnegative("eps", eps)
    if not 0 < power <= 1:
        raise ValueError(
            f"power must be in (0, 1] (1/4 as in the paper, 1/2 the Fisher-related one), "
            f"got {power}"
        )
    pt = _chain_point(problem, w, "shampoo")
    factors = []
    for G in gradient_matrices(pt, pt.r[None]):
        G = G[0]  # (N, n, m+1)
        L = np.einsum("nij,nkj->ik", G, G) / pt.N
        R = np.einsum("nij,nik->jk", G, G) / pt.N
        factors.append((_power(R, power, eps), _power(L, power, eps)))
    K = KroneckerFactored(factors, pt.l2, f"shampoo (p={power:g})")
    K.power, K.eps = power, eps
    return K


register(
    "shampoo",
    lambda problem, w, power=0.25, eps=0.0: shampoo(problem, w, power=power, eps=eps),
    "Shampoo: L^p ⊗ R^p of per-sample gradients (p = 1/4)",
    "Gupta et al. 2018",
    structure="kronecker",
    chains_only=True,
    references=("L and R from per-sample gradients",),
)
