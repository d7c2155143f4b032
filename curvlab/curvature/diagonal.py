"""The exact diagonal of the GGN, and a diagonal curvature matrix.

diag(G)_l = (1/N) Σₙ Σ_r (δ_{l,n,r})² ⊗ (ā_{l,n})², δ the backprops of the columns of C
(B = C Cᵀ): the diagonal of (1/N) Σₙ Gₙ ⊗ āāᵀ without forming any block.
"""

import numpy as np

from .. import engine
from .._checks import check_dense, flat_vector, nonnegative
from ..problem import require_problem
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
        if den.min() <= 0:
            raise np.linalg.LinAlgError(f"{self.name}: zero diagonal entries; pass damping > 0")
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
    C = pt.problem.lossfn.sqrt_hessian(pt.tr.z, pt.problem.y)
    deltas = pt.backward(C.transpose(2, 0, 1))
    parts = []
    for dl, ab in zip(deltas, pt.tr.abar):
        if ab.shape[1] == 1:
            parts.append(np.einsum("rni,nj->ij", dl[:, :, 0] ** 2, ab[:, 0] ** 2).ravel())
        else:
            parts.append((engine.jacobian_rows(pt.tr._replace(abar=[ab]), [dl]) ** 2).sum((0, 1)))
    return np.concatenate(parts) / pt.N


def diag_ggn(problem, w):
    """The exact diagonal of the GGN (plus λ), shape (P,). Cost: K backprops, no P×P memory."""
    pt = _Point(require_problem(problem, "diag_ggn"), w)
    return _ggn_diagonal(pt) + pt.l2


def diagonal(problem, w):
    """The exact GGN diagonal as a `Diagonal` curvature matrix (λ kept apart, as in the others)."""
    pt = _Point(require_problem(problem, "diagonal"), w)
    return Diagonal(_ggn_diagonal(pt), pt.l2, "diagonal", pt.problem.model.layer_slices())
