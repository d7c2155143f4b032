"""Exact diagonals — of the GGN, of its Monte-Carlo estimate, of the Hessian — and a diagonal
curvature matrix.

diag(G)_l = (1/N) Σₙ Σ_r (Σ_t δ_{l,n,t,r} ā_{l,n,t})², δ the backprops of the columns of C
(B = C Cᵀ): for a Dense layer the diagonal of (1/N) Σₙ Gₙ ⊗ āāᵀ, without forming any block
(BackPACK's DiagGGNExact; DiagGGNMC with sampled ∂ℓ/∂z in place of C's columns).

diag(H)_l = (1/N) Σₙ Σ_{t,t'} H_{l,n}[(t,i),(t',i)] ā_{l,n,t}[j] ā_{l,n,t'}[j] from the per-sample
pre-activation Hessians of Botev's recursion (blocks.pre_activation_hessians) — no P × P matrix,
and for Dense layers only the diagonals of the H_l. (BackPACK's DiagHessian gets the same numbers
by backpropagating signed square-root factors of each layer's f'' term instead.)
"""

import numpy as np

from .. import engine
from .._checks import check_dense, flat_vector, nonnegative
from ..problem import require_problem
from .registry import register
from .products import _Point


class Diagonal:
    """diag(d) + λI as a curvature matrix: `@ v`, `.solve(v, damping)`, `.to_dense()`."""

    def __init__(self, d, l2=0.0, name="diagonal", layer_slices=None):
        self.d = np.asarray(d, dtype=np.float64)
        self.l2, self.name = float(l2), name
        self.n_params = self.d.shape[0]
        self.layer_slices = layer_slices or [slice(0, self.n_params)]

    @property
    def shape(self):
        return (self.n_params, self.n_params)

    @property
    def diag(self):
        return self.d + self.l2

    def __matmul__(self, v):
        v = flat_vector("v", v, self.n_params)
        return (self.diag if v.ndim == 1 else self.diag[:, None]) * v

    def solve(self, v, damping=0.0):
        v = flat_vector("v", v, self.n_params)
        den = self.diag + nonnegative("damping", damping)
        if np.abs(den).min() <= 1e-14 * max(np.abs(den).max(), 1e-300):
            raise np.linalg.LinAlgError(f"{self.name} + {damping:g} I has a zero diagonal entry; "
                                        "pass another damping")
        return v / (den if v.ndim == 1 else den[:, None])

    def to_dense(self):
        check_dense(self.name, self.n_params)
        return np.diag(self.diag)

    def blocks(self):
        return [np.diag(self.diag[sl]) for sl in self.layer_slices]

    def eigvalsh(self):
        return np.sort(self.diag)

    def __repr__(self):
        return f"Diagonal({self.name!r}, P={self.n_params})"


def _ggn_diagonal(pt):
    """diag of (1/N) Σₙ Jₙᵀ Bₙ Jₙ, without the L2 term. With weight sharing the per-sample
    gradient entries Σ_t δ_t ā_t are summed over the locations before they are squared."""
    return _squared_rows(pt, pt.backward(pt.sqrt_seeds))


def _mc_diagonal(pt, samples, seed):
    from .fisher import mc_seeds
    return _squared_rows(pt, pt.backward(mc_seeds(pt, samples, seed)))


def _squared_rows(pt, deltas, rotations=None):
    """(1/N) Σ_q Σ_n (Jₙᵀ s_{q,n})² from the backprops `deltas` = pt.backward(seeds) of output
    seeds (Q, N, K), entry by entry of each layer's W̄; with rotations [(Q_S, Q_A)] per layer, of
    the per-sample gradient matrices in that basis, Q_Sᵀ Gₙ Q_A (EKFAC's refit). A Dense layer's
    Gₙ = δₙ āₙᵀ is an outer product, so its squares are the outer product of the squares: no
    per-sample matrix is formed."""
    parts = []
    for l, (dl, ab) in enumerate(zip(deltas, pt.tr.abar)):
        if rotations is not None:
            QS, QA = rotations[l]
            dl, ab = dl @ QS, ab @ QA
        if ab.shape[1] == 1:
            # Σ_r over the seeds first, then one GEMM over the samples (einsum would not use BLAS)
            parts.append(((dl[:, :, 0] ** 2).sum(0).T @ ab[:, 0] ** 2).ravel())
        else:
            parts.append((engine.jacobian_rows(pt.tr._replace(abar=[ab]), [dl]) ** 2).sum((0, 1)))
    return np.concatenate(parts) / pt.N


def _hessian_diagonal(pt):
    """diag of the Hessian without the L2 term, from the per-sample H_l (module docstring)."""
    from .blocks import _per_sample_bytes, pre_activation_hessians, sample_chunks
    model = pt.problem.model
    total = 0.0
    for c in sample_chunks(pt, _per_sample_bytes(model)):
        parts = []
        for H, ab, layer in zip(pre_activation_hessians(c, exact=True), c.tr.abar, model.layers):
            N, T, m1 = ab.shape
            if T == 1:
                parts.append(np.einsum("ni,nj->ij", np.einsum("nii->ni", H), ab[:, 0] ** 2).ravel())
            else:
                Hi = np.einsum("ntiui->nitu", H.reshape(N, T, layer.n_out, T, layer.n_out))
                parts.append(np.einsum("nitu,ntj,nuj->ij", Hi, ab, ab).ravel())
        total = total + np.concatenate(parts)
    return total / pt.N


def diag_hessian(problem, w):
    """The exact diagonal of the Hessian (plus λ), shape (P,), without forming H (module
    docstring). Cost: Botev's recursion for the per-sample H_l, one pass of small products."""
    pt = _Point(require_problem(problem, "diag_hessian"), w)
    return _hessian_diagonal(pt) + pt.l2


def diag_ggn_mc(problem, w, samples=1, seed=0):
    """The Monte-Carlo GGN diagonal (plus λ): the diagonal of the MC Fisher, `samples` targets
    drawn from the model per input (BackPACK's DiagGGNMC). Cost: `samples` backprops."""
    pt = _Point(require_problem(problem, "diag_ggn_mc"), w)
    return _mc_diagonal(pt, samples, seed) + pt.l2


def diag_ggn(problem, w):
    """The exact diagonal of the GGN (plus λ), shape (P,). Cost: K backprops, no P×P memory."""
    pt = _Point(require_problem(problem, "diag_ggn"), w)
    return _ggn_diagonal(pt) + pt.l2


def diagonal(problem, w):
    """The exact GGN diagonal as a `Diagonal` curvature matrix (λ kept apart, as in the others)."""
    pt = _Point(require_problem(problem, "diagonal"), w)
    return Diagonal(_ggn_diagonal(pt), pt.l2, "diagonal", pt.problem.model.layer_slices())


register("diag_hessian", lambda problem, w: Diagonal(
    _hessian_diagonal(_Point(require_problem(problem, "diag_hessian"), w)), problem.l2, "diag_hessian",
    problem.model.layer_slices()), "exact diagonal of the Hessian", "BackPACK DiagHessian")
register("diag_ggn_mc", lambda problem, w, samples=1, seed=0: Diagonal(
    _mc_diagonal(_Point(require_problem(problem, "diag_ggn_mc"), w), samples, seed), problem.l2,
    "diag_ggn_mc", problem.model.layer_slices()), "Monte-Carlo GGN diagonal", "BackPACK DiagGGNMC")
