"""Per-sample quantities: gradients and their batch statistics, the square root of the GGN,
the neural tangent kernel, and ViViT's directional view of the GGN.

Every per-sample quantity here is a *row* of a Jacobian: for output seeds s (Q, N, K) the rows
Jₙᵀ s_{q,n} = Σ_t δ_{l,n,t} ⊗ ā_{l,n,t} (engine.jacobian_rows), one backward pass for all
samples. Conventions (mean loss, no L2 term unless stated):

    per_sample_grads   ∇ℓₙ (N, P);  mean + λw = ∇L.  BackPACK's BatchGrad is ∇ℓₙ / N.
    batch_stats        ‖∇ℓₙ‖², Σₙ ∇ℓₙ², population variance;  BackPACK's BatchL2Grad,
                       SumGradSquared and Variance are these / N² (its gradients carry 1/N).
    sqrt_ggn           V (P, N·R) with G = V Vᵀ (λ not included),
                       column n·R + r = Jₙᵀ C_{n,:,r} / √N,
                       B = C Cᵀ; BackPACK's SqrtGGNExact is the same V with columns ordered (r, n).
    ntk                Θ = J Jᵀ (N·K, N·K), row n·K + k = ∂z_{n,k}/∂w; no 1/N (neural-tangents,
                       nngeometry). With MSE (B = I) the nonzero spectrum of Θ/N is the GGN's.

On a model that couples its samples (train-mode BatchNorm) there are no per-sample gradients:
per_sample_grads, batch_stats, sqrt_ggn and vivit refuse by name; ntk is the batch's J Jᵀ
(`engine.Point.rows`, one seed per sample and output).
"""

from dataclasses import dataclass

import numpy as np

from .. import engine
from .._checks import check_dense, nonnegative, short_repr
from ..problem import require_problem


def _rows(pt, seeds):
    """Jacobian rows of output seeds (Q, N, K): (Q, N, P)."""
    return engine.jacobian_rows(pt.tr, pt.backward(seeds))


def per_sample_grads(problem, w):
    """∇ℓₙ(w), shape (N, P), at the data labels, without the L2 term (their mean plus λw is
    ∇L). Cost: one backward pass; memory N·P."""
    pt = require_problem(problem, "per_sample_grads").point(w)
    engine.require_independent(problem.model, "per_sample_grads")
    return _rows(pt, pt.r[None])[0]


@dataclass
class BatchStats:
    """Batch statistics of the per-sample gradients gₙ = ∇ℓₙ (see module docstring for the
    mapping to BackPACK's first-order extensions)."""

    __repr__ = short_repr

    l2: np.ndarray  # (N,)  ‖gₙ‖²
    sum_squares: np.ndarray  # (P,)  Σₙ gₙ²  (diag of the empirical Fisher is this / N)
    variance: np.ndarray  # (P,)  (1/N) Σₙ (gₙ − ḡ)², the population variance
    mean: np.ndarray  # (P,)  ḡ, the gradient without λw


def batch_stats(problem, w):
    """BatchStats of the per-sample gradients. Identities: diag(EF) = sum_squares / N + λ and
    tr(EF) = Σ l2 / N + λP for the empirical Fisher EF."""
    G = per_sample_grads(problem, w)
    mean = G.mean(0)
    return BatchStats(
        np.einsum("np,np->n", G, G),
        np.einsum("np,np->p", G, G),
        np.einsum("np,np->p", G, G) / len(G) - mean**2,
        mean,
    )


def sqrt_ggn(problem, w):
    """V (P, N·R) with V Vᵀ = G, the GGN without λI: column n·R + r is Jₙᵀ C_{n,:,r} / √N for
    the factor C of B = C Cᵀ (R = K for the built-in losses). Cost: R backward passes."""
    pt = require_problem(problem, "sqrt_ggn").point(w)
    engine.require_independent(problem.model, "sqrt_ggn (per-sample columns Jₙᵀ Cₙ)")
    rows = _rows(pt, pt.sqrt_seeds) / np.sqrt(pt.N)  # (R, N, P)
    return rows.transpose(1, 0, 2).reshape(-1, problem.n_params).T


def ntk(problem, w):
    """The empirical neural tangent kernel Θ = J Jᵀ, (N·K, N·K), row n·K + k = ∂z_{n,k}/∂w."""
    pt = require_problem(problem, "ntk").point(w)
    NK = pt.N * problem.n_outputs
    check_dense("ntk", NK, alternative="cl.jvp / cl.vjp (matrix-free J v, Jᵀ u)")
    if engine.couples(problem.model):   # the batch's rows, one seed per sample and output
        K = problem.n_outputs
        J = pt.rows(np.broadcast_to(np.eye(K)[:, None, :], (K, pt.N, K)))
    else:
        J = engine.jacobian_rows(pt.tr, pt.D)
    J = J.transpose(1, 0, 2).reshape(NK, -1)
    return J @ J.T


@dataclass
class ViViT:
    """The GGN's eigenpairs (from the Gram matrix VᵀV of its square root V, N·R × N·R instead of
    P × P) and, per sample and direction eₖ, the first and second directional derivatives
    γₙₖ = ∇ℓₙᵀ eₖ and λₙₖ = eₖᵀ Gₙ eₖ (Gₙ the per-sample GGN, so meanₙ λₙₖ = λₖ)."""

    __repr__ = short_repr

    eigenvalues: np.ndarray  # (k,) descending
    eigenvectors: np.ndarray  # (P, k)
    gammas: np.ndarray  # (N, k)
    lambdas: np.ndarray  # (N, k)
    l2: float

    def newton_step(self, damping):
        """ViViT's directionally damped Newton step −Σₖ γ̄ₖ / (λₖ + λ + δₖ) eₖ, γ̄ₖ the mean of the
        γₙₖ (so γ̄ₖ = gᵀeₖ without the L2 term); damping δ: one number or one per direction.
        With every nonzero eigenpair and no L2 term it is −(G + δI)⁻¹ Π g, Π the projector
        onto G's range."""
        delta = np.broadcast_to(np.asarray(damping, dtype=np.float64), self.eigenvalues.shape)
        if np.any(delta < 0) or not np.all(np.isfinite(delta)):
            raise ValueError("damping must be finite and >= 0 (one number or one per direction)")
        den = self.eigenvalues + self.l2 + delta
        if den.min() <= 0:
            raise np.linalg.LinAlgError("λₖ + damping is zero for some direction; pass damping > 0")
        return -self.eigenvectors @ (self.gammas.mean(0) / den)


def vivit(problem, w, k=None, tol=1e-12):
    """ViViT (Dangel, Tatzel & Hennig 2022) for the top-k GGN eigenpairs (k=None: every
    eigenvalue above tol × the largest). Cost: R backward passes, one (N·R)² Gram eigen-
    decomposition; no P × P matrix."""
    problem = require_problem(problem, "vivit")
    V = sqrt_ggn(problem, w)  # (P, N·R)
    lam, E = np.linalg.eigh(V.T @ V)
    lam, E = lam[::-1], E[:, ::-1]
    keep = lam > nonnegative("tol", tol) * max(lam[0], 1e-300)
    if k is not None:
        if not 1 <= int(k) <= keep.sum():
            raise ValueError(
                f"k must be between 1 and the GGN's numerical rank {int(keep.sum())}, got {k}"
            )
        keep[int(k) :] = False
    lam, E = lam[keep], E[:, keep]
    U = V @ E / np.sqrt(lam)  # unit eigenvectors of G
    N = problem.N
    R = V.shape[1] // N
    proj = (V.T @ U).reshape(N, R, -1)  # V_nᵀ eₖ, scaled 1/√N
    return ViViT(
        lam,
        U,
        per_sample_grads(problem, w) @ U,
        N * np.einsum("nrk,nrk->nk", proj, proj),
        problem.l2,
    )
