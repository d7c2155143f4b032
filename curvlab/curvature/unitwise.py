"""The unit-wise Fisher (ASDL's 'unit_wise'): per output unit of each layer — a Dense unit or a
conv filter — the exact sub-block of the GGN over that unit's incoming weights and bias,

    F_{l,i} = (1/N) Σₙ Σᵣ gₙ,ᵣ,ᵢ gₙ,ᵣ,ᵢᵀ,   gₙ,ᵣ,ᵢ = row i of the per-sample gradient matrix Gₙ,ᵣ,

(Gₙ,ᵣ of the columns of √B: the GGN, which is the true Fisher for the built-in losses), a
block-diagonal matrix of n_l blocks of size m_l + 1 per layer.
"""

import numpy as np

from .._checks import flat_vector, nonnegative
from ..problem import require_problem
from .ekfac import gradient_matrices
from .kfac import BlockDiagonalDense
from .registry import register
from .products import _Point


class UnitBlocks(BlockDiagonalDense):
    """Block diagonal over units: `.units[l]` (n_l, m_l+1, m_l+1) per layer, plus λI."""

    def __init__(self, units, l2=0.0, name="unitwise"):
        self.units = [np.asarray(u) for u in units]
        self.l2, self.name = float(l2), name
        self.offsets = np.cumsum([0] + [u.shape[0] * u.shape[1] for u in self.units])
        self.n_params = int(self.offsets[-1])
        self._eig = None

    @property
    def shape(self):
        return (self.n_params, self.n_params)

    def eig(self):
        if self._eig is None:
            self._eig = [np.linalg.eigh(u) for u in self.units]
        return self._eig

    def _apply(self, v, per_unit):
        v = flat_vector("v", v, self.n_params)
        V = v[:, None] if v.ndim == 1 else v
        out = np.empty_like(V)
        for l, (u, o, e) in enumerate(zip(self.units, self.offsets[:-1], self.offsets[1:])):
            Vl = V[o:e].reshape(u.shape[0], u.shape[1], -1)             # (unit, j, q)
            out[o:e] = per_unit(l, Vl).reshape(e - o, -1)
        return out[:, 0] if v.ndim == 1 else out

    def __matmul__(self, v):
        return self._apply(v, lambda l, Vl: self.units[l] @ Vl + self.l2 * Vl)

    def solve(self, v, damping=0.0):
        gamma = nonnegative("damping", damping) + self.l2
        if min(lam.min() for lam, _ in self.eig()) + gamma <= 0:
            raise np.linalg.LinAlgError(f"{self.name} + {gamma:g} I is singular; pass damping > 0")

        def inv(l, Vl):
            lam, U = self.eig()[l]
            return U @ ((U.transpose(0, 2, 1) @ Vl) / (lam + gamma)[:, :, None])
        return self._apply(v, inv)

    def eigvalsh(self):
        return np.sort(np.concatenate([lam.ravel() for lam, _ in self.eig()])) + self.l2

    def blocks(self):
        out = []
        for u in self.units:
            B = np.zeros((u.shape[0] * u.shape[1],) * 2)
            for i, ui in enumerate(u):
                s = slice(i * u.shape[1], (i + 1) * u.shape[1])
                B[s, s] = ui
            out.append(B + self.l2 * np.eye(len(B)))
        return out

    def __repr__(self):
        return f"UnitBlocks({self.name!r}, P={self.n_params})"


def unitwise(problem, w):
    """The unit-wise Fisher (module docstring). Cost: K backprops."""
    pt = _Point(require_problem(problem, "unitwise"), w)
    units = [np.einsum("rnij,rnik->ijk", G, G) / pt.N for G in gradient_matrices(pt, pt.sqrt_seeds)]
    return UnitBlocks(units, pt.l2)


register("unitwise", lambda problem, w: unitwise(problem, w),
         "unit-wise Fisher: exact block per output unit", "ASDL (Osawa et al. 2023)")
