"""Every curvature matrix behind one interface, chosen by name.

`matrix(problem, w, kind)` returns an object with `.to_dense()`, `@ v`, `.solve(v, damping)`
(cached factorisations, so sweeping the damping is cheap), `.blocks()` (per-layer diagonal
blocks) and `.eigvalsh()`:

    'hessian', 'ggn', 'fisher' (true), 'empirical_fisher', 'mc_fisher'   Dense
    'kfac', 'kflr', 'kfra'                                               KroneckerFactored
    'diagonal' (exact diagonal of the GGN)                               Diagonal
"""

import numpy as np

from .._checks import check_dense, choice, flat_vector, nonnegative
from ..problem import Problem, as_objective
from .diagonal import diagonal
from .fisher import fisher
from .ggn import ggn
from .hessian import hessian
from .kfac import kfac, kflr, kfra

DENSE_KINDS = ("hessian", "ggn", "fisher", "empirical_fisher", "mc_fisher")
KRONECKER_KINDS = ("kfac", "kflr", "kfra")
KINDS = DENSE_KINDS + KRONECKER_KINDS + ("diagonal",)


class Dense:
    """A dense symmetric curvature matrix with a cached eigendecomposition."""

    def __init__(self, M, name, layer_slices=None):
        self.M = np.asarray(M, dtype=np.float64)
        self.name = name
        self.n_params = self.M.shape[0]
        self.layer_slices = layer_slices or [slice(0, self.n_params)]
        self._eig = None

    @property
    def shape(self):
        return self.M.shape

    def __matmul__(self, v):
        return self.M @ flat_vector("v", v, self.n_params)

    def to_dense(self):
        return self.M

    def blocks(self):
        return [self.M[sl, sl] for sl in self.layer_slices]

    def eigh(self):
        """Cached (eigenvalues ascending, eigenvectors)."""
        if self._eig is None:
            self._eig = np.linalg.eigh(self.M)
        return self._eig

    def eigvalsh(self):
        return self.eigh()[0]

    def solve(self, v, damping=0.0):
        """(M + ηI)⁻¹ v through the cached eigendecomposition."""
        v = flat_vector("v", v, self.n_params)
        lam, U = self.eigh()
        den = lam + nonnegative("damping", damping)
        if np.abs(den).min() <= 1e-14 * max(np.abs(den).max(), 1e-300):
            raise np.linalg.LinAlgError(f"{self.name} + {damping:g} I is singular; pass damping > 0")
        coef = U.T @ v
        return U @ (coef / (den if v.ndim == 1 else den[:, None]))

    def __repr__(self):
        return f"Dense({self.name!r}, P={self.n_params})"


def matrix(objective, w, kind, samples=1, seed=0, flavor="expand"):
    """The curvature matrix of the given kind at w (see module docstring). samples, seed: for
    the Monte-Carlo kinds; flavor: 'expand' or 'reduce' for the Kronecker kinds on conv layers."""
    choice("curvature kind", kind, KINDS)
    obj = as_objective(objective)
    if not isinstance(obj, Problem):
        if kind not in ("hessian", "ggn", "fisher"):
            raise TypeError(f"{kind!r} needs a Problem; a generic objective offers 'hessian' "
                            "(and 'ggn'/'fisher' when it defines them)")
        if kind == "hessian":
            return Dense(hessian(obj, w), "hessian")
        if obj.ggn is None:
            raise TypeError(f"the objective {obj.name!r} defines no Gauss-Newton matrix; pass "
                            "ggn=... to cl.Objective or use a Problem")
        w = obj.check(w)
        check_dense(kind, w.shape[0])
        return Dense(obj.ggn(w), kind)
    slices = obj.model.layer_slices()
    if kind == "hessian":
        return Dense(hessian(obj, w), kind, slices)
    if kind == "ggn":
        return Dense(ggn(obj, w), kind, slices)
    if kind in ("fisher", "empirical_fisher", "mc_fisher"):
        fk = {"fisher": "true", "empirical_fisher": "empirical", "mc_fisher": "mc"}[kind]
        return Dense(fisher(obj, w, fk, samples=samples, seed=seed), kind, slices)
    if kind == "kfac":
        return kfac(obj, w, samples=samples, seed=seed, flavor=flavor)
    if kind == "kflr":
        return kflr(obj, w, flavor=flavor)
    if kind == "kfra":
        return kfra(obj, w, flavor=flavor)
    return diagonal(obj, w)
