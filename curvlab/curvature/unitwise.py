"""The unit-wise Fisher (ASDL's 'unit_wise'): per output unit of each layer — a Dense unit or a
conv filter — the exact sub-block of the GGN over that unit's incoming weights and bias,

    F_{l,i} = (1/N) Σₙ Σᵣ gₙ,ᵣ,ᵢ gₙ,ᵣ,ᵢᵀ,   gₙ,ᵣ,ᵢ = row i of the per-sample gradient matrix Gₙ,ᵣ,

(Gₙ,ᵣ of the columns of √B: the GGN, which is the true Fisher for the built-in losses), a
block-diagonal matrix of n_l blocks of size m_l + 1 per layer.
"""

import numpy as np

from .base import BlockDiagonal, check_singular
from .ekfac import _chain_point, gradient_matrices
from .registry import register


class UnitBlocks(BlockDiagonal):
    """Block diagonal over units: `.units[l]` (n_l, m_l+1, m_l+1) per layer, plus λI."""

    def __init__(self, units, l2=0.0, name="unitwise"):
        self.units = [np.asarray(u) for u in units]
        self.l2, self.name = float(l2), name
        self._set_sizes(u.shape[0] * u.shape[1] for u in self.units)
        self._eig = None

    def eig(self):
        if self._eig is None:
            self._eig = [np.linalg.eigh(u) for u in self.units]
        return self._eig

    def _per_unit(self, l, Vl, fn):
        u = self.units[l]
        return fn(Vl.reshape(u.shape[0], u.shape[1], -1)).reshape(Vl.shape)   # (unit, j, q)

    def _block_matmat(self, l, Vl):
        return self._per_unit(l, Vl, lambda X: self.units[l] @ X)

    def _block_solve(self, l, Vl, gamma):
        lam, U = self.eig()[l]
        check_singular(self.name, lam + gamma, gamma)
        return self._per_unit(l, Vl, lambda X: U @ ((U.transpose(0, 2, 1) @ X)
                                                     / (lam + gamma)[:, :, None]))

    def _block_eigvalsh(self, l):
        return self.eig()[l][0]

    def _block_dense(self, l):
        u = self.units[l]
        B = np.zeros((u.shape[0] * u.shape[1],) * 2)
        for i, ui in enumerate(u):
            s = slice(i * u.shape[1], (i + 1) * u.shape[1])
            B[s, s] = ui
        return B


def unitwise(problem, w):
    """The unit-wise Fisher (module docstring). Cost: K backprops."""
    pt = _chain_point(problem, w, "unitwise")
    units = [np.einsum("rnij,rnik->ijk", G, G) / pt.N for G in gradient_matrices(pt, pt.sqrt_seeds)]
    return UnitBlocks(units, pt.l2)


register("unitwise", lambda problem, w: unitwise(problem, w),
         "unit-wise Fisher: exact block per output unit", "ASDL (Osawa et al. 2023)",
         structure="blocks", chains_only=True, references=("sub-blocks of the dense GGN",))
