"""KFOC and TNT: two more single-Kronecker-product approximations of each layer's GGN block.

KFOC — the Frobenius-optimal Kronecker product: argmin_{S, A} ‖G_l − S ⊗ A‖_F. Van Loan's
rearrangement R(G_l) (rows (i, i'), columns (j, j') for the block's entry [(i, j), (i', j')])
turns S ⊗ A into the rank-one matrix vec(S) vec(A)ᵀ, so the optimum is the leading singular
pair: S ⊗ A = σ₁ u₁ v₁ᵀ rearranged back, and ‖G_l − S ⊗ A‖²_F = ‖G_l‖²_F − σ₁². Exact when the
block is a Kronecker product (a Dense layer and one sample). Needs the exact block.

TNT (Ren & Goldfarb 2021, tensor-normal training), from the exact type-2 per-sample gradient
matrices Gₙ,ᵣ (n × (m+1)) of each layer, trace-normalised:
    S = E[G Gᵀ] / √t,   A = E[Gᵀ G] / √t,   t = E‖G‖²_F = tr(G_l),
E = (1/N) Σₙ Σᵣ, so tr(S ⊗ A) = tr(G_l) exactly.
"""

import numpy as np
from scipy.sparse.linalg import svds

from ..problem import require_problem
from .blocks import ggn_blocks
from .ekfac import _chain_point, gradient_matrices
from .kfac import KroneckerFactored
from .registry import register, require_chain


def rearrange(G, n, m1):
    """Van Loan's rearrangement of a block (n·m1, n·m1) to (n², m1²)."""
    return G.reshape(n, m1, n, m1).transpose(0, 2, 1, 3).reshape(n * n, m1 * m1)


def nearest_kronecker(G, n, m1):
    """(S, A, σ₁) with S ⊗ A the nearest Kronecker product to G in Frobenius norm; S, A symmetric
    with positive traces for a positive semi-definite G."""
    R = rearrange(G, n, m1)
    if min(R.shape) > 64:
        u, sv, vt = svds(R, k=1, random_state=0)
    else:
        u, sv, vt = np.linalg.svd(R, full_matrices=False)
    u, s1, v = u[:, 0], sv[0], vt[0]
    S, A = np.sqrt(s1) * u.reshape(n, n), np.sqrt(s1) * v.reshape(m1, m1)
    if np.trace(S) < 0:
        S, A = -S, -A
    return 0.5 * (S + S.T), 0.5 * (A + A.T), float(s1)


def kfoc(problem, w):
    """KFOC (module docstring): the nearest Kronecker product to each exact GGN block. Cost: the
    exact blocks and a leading singular pair of each rearranged block."""
    problem = require_problem(problem, "kfoc")
    require_chain(problem, "kfoc")
    factors = []
    for G, layer in zip(ggn_blocks(problem, w), problem.model.layers):
        G = G - problem.l2 * np.eye(len(G))  # the blocks carry λI; S ⊗ A does not
        S, A, _ = nearest_kronecker(G, *layer.shape)
        factors.append((A, S))
    return KroneckerFactored(factors, problem.l2, "kfoc")


def tnt(problem, w):
    """TNT (module docstring). Cost: K backprops (the per-sample gradients of the columns of √B)."""
    pt = _chain_point(problem, w, "tnt")
    factors = []
    for G in gradient_matrices(pt, pt.sqrt_seeds):
        flat = G.reshape(-1, *G.shape[2:])  # (R·N, n, m+1)
        t = np.einsum("qij,qij->", flat, flat) / pt.N
        S = np.einsum("qij,qkj->ik", flat, flat) / pt.N / np.sqrt(t)
        A = np.einsum("qij,qik->jk", flat, flat) / pt.N / np.sqrt(t)
        factors.append((A, S))
    return KroneckerFactored(factors, pt.l2, "tnt")


register(
    "kfoc",
    lambda problem, w: kfoc(problem, w),
    "KFOC: Frobenius-optimal S ⊗ A per layer",
    "Van Loan & Pitsianis 1993; Koroko et al. 2022",
    structure="kronecker",
    chains_only=True,
    references=("exact for a Kronecker block", "optimal against perturbed factors"),
)
register(
    "tnt",
    lambda problem, w: tnt(problem, w),
    "TNT: trace-normalised E[GGᵀ] ⊗ E[GᵀG]",
    "Ren & Goldfarb 2021 (type-2 gradients)",
    structure="kronecker",
    chains_only=True,
    references=("factors by their definition", "tr = tr of the GGN block"),
)
