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
from .._checks import check_dense
from ..problem import require_problem
from .base import Curvature, check_singular
from .registry import REGISTRY, call, register


class Diagonal(Curvature):
    """diag(d) + λI as a curvature matrix: `@ v`, `.solve(v, damping)`, `.to_dense()`; its
    eigenvalues are the entries (never a P × P matrix but in `to_dense`)."""

    def __init__(self, d, l2=0.0, name="diagonal", layer_slices=None):
        self.d = np.asarray(d, dtype=np.float64)
        self.l2, self.name = float(l2), name
        self.n_params = self.d.shape[0]
        self.layer_slices = layer_slices or [slice(0, self.n_params)]

    @property
    def diag(self):
        """The diagonal of d + λI."""
        return self.d + self.l2

    def _matmat(self, V):
        return self.d[:, None] * V

    def _solve(self, V, gamma):
        check_singular(self.name, self.d + gamma, gamma)
        return V / (self.d + gamma)[:, None]

    def _eigvalsh(self):
        return self.d

    def to_dense(self):
        check_dense(self.name, self.n_params, alternative="its .diag")
        return np.diag(self.diag)

    def blocks(self):
        return [np.diag(self.diag[sl]) for sl in self.layer_slices]

    def layer_eigvalsh(self, l):
        return np.sort(self.diag[self.layer_slices[l]])


def _ggn_diagonal(pt):
    """diag of (1/N) Σₙ Jₙᵀ Bₙ Jₙ, without the L2 term. With weight sharing the per-sample
    gradient entries Σ_t δ_t ā_t are summed over the locations before they are squared.
    Coupled samples (train-mode BatchNorm): the squares of the batch's rows (`Point.rows`)."""
    if engine.couples(pt.problem.model):
        return (pt.rows(pt.sqrt_seeds) ** 2).sum((0, 1)) / pt.N
    return _squared_rows(pt, pt.backward(pt.sqrt_seeds))


def _mc_diagonal(pt, samples, seed):
    from .fisher import mc_seeds
    engine.require_independent(pt.problem.model, "diag_ggn_mc (per-sample sampled gradients)")
    return _squared_rows(pt, pt.backward(mc_seeds(pt, samples, seed)))


def _squared_rows(pt, deltas):
    """(1/N) Σ_q Σ_n (Jₙᵀ s_{q,n})² from the backprops `deltas` = pt.backward(seeds) of output
    seeds (Q, N, K), entry by entry of each layer's W̄. A Dense layer's Gₙ = δₙ āₙᵀ is an outer
    product, so its squares are the outer product of the squares: no per-sample matrix is
    formed."""
    parts = []
    model, tr = pt.problem.model, pt.tr
    for layer, Wb, st, dl in zip(model.layers, pt.Wbars, tr.layer_states, deltas):
        ab = getattr(st, "abar", None)
        if ab is not None and ab.shape[1] == 1:
            # Σ_r over the seeds first, then one GEMM over the samples (einsum would not use BLAS)
            parts.append(((dl[:, :, 0] ** 2).sum(0).T @ ab[:, 0] ** 2).ravel())
        else:
            parts.append((layer.param_rows(Wb, st, dl) ** 2).sum((0, 1)))
    return np.concatenate(parts) / pt.N


def _hessian_diagonal(pt):
    """diag of the Hessian without the L2 term, from the per-sample H_l (module docstring)."""
    from .blocks import _per_sample_bytes, hessian_columns, pre_activation_hessians, sample_chunks
    model = pt.problem.model
    if not model.is_chain:   # the diagonal of its columns by H V, a block of them at a time
        P = model.n_params
        step = max(1, min(P, 2**22 // (8 * P)))
        return np.concatenate([
            np.diag(hessian_columns(pt, np.arange(c0, min(c0 + step, P)))[c0:c0 + step])
            for c0 in range(0, P, step)]) - pt.l2
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
    pt = require_problem(problem, "diag_hessian").point(w)
    return _hessian_diagonal(pt) + pt.l2


def diag_ggn_mc(problem, w, samples=1, seed=0):
    """The Monte-Carlo GGN diagonal (plus λ): the diagonal of the MC Fisher, `samples` targets
    drawn from the model per input (BackPACK's DiagGGNMC). Cost: `samples` backprops."""
    pt = require_problem(problem, "diag_ggn_mc").point(w)
    return _mc_diagonal(pt, samples, seed) + pt.l2


def diag_ggn(problem, w):
    """The exact diagonal of the GGN (plus λ), shape (P,). Cost: K backprops, no P×P memory."""
    pt = require_problem(problem, "diag_ggn").point(w)
    return _ggn_diagonal(pt) + pt.l2


def diagonal(problem, w):
    """The exact GGN diagonal as a `Diagonal` curvature matrix (λ kept apart, as in the others)."""
    return REGISTRY["diagonal"].build(problem, w)


def _diagonal_kind(name, diag):
    def build(problem, w, samples=1, seed=0):
        pt = require_problem(problem, name).point(w)
        d = call(diag, pt, samples=samples, seed=seed)
        return Diagonal(d, pt.l2, name, pt.problem.model.layer_slices())
    return build


register("diagonal", _diagonal_kind("diagonal", _ggn_diagonal), "exact diagonal of the GGN",
         "exact; BackPACK DiagGGNExact", structure="diagonal", optimizer="diagonal",
         references=("diag of the dense GGN", "BackPACK DiagGGNExact"))
register("diag_hessian", _diagonal_kind("diag_hessian", _hessian_diagonal),
         "exact diagonal of the Hessian", "BackPACK DiagHessian", structure="diagonal",
         references=("diag of autograd.hessian", "BackPACK DiagHessian"))
register("diag_ggn_mc", _diagonal_kind(
    "diag_ggn_mc", lambda pt, samples=1, seed=0: _mc_diagonal(pt, samples, seed)),
    "Monte-Carlo GGN diagonal", "BackPACK DiagGGNMC", structure="diagonal", sampled=True,
    references=("diag of the MC Fisher", "→ GGN diagonal as samples grow"))
