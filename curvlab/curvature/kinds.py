"""Every curvature matrix behind one interface, chosen by name.

`matrix(problem, w, kind)` returns an object with `.to_dense()`, `@ v`, `.solve(v, damping)`
(cached factorisations, so sweeping the damping is cheap), `.blocks()` (per-layer diagonal
blocks) and `.eigvalsh()`:

    'hessian', 'ggn', 'fisher' (true), 'empirical_fisher', 'mc_fisher'   Dense
    'kfac', 'kflr', 'kfra'                                               KroneckerFactored
    'diagonal' (exact diagonal of the GGN)                               Diagonal

and, wherever a kind is accepted, your own matrix M (`as_matrix`): a dense (P, P) array, a
scipy LinearOperator, or a callable v -> M v — with its size checked against the problem's P.
"""

import inspect

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .._checks import check_dense, choice, flat_vector, nonnegative
from ..problem import Problem, as_objective
from .diagonal import diagonal
from .fisher import fisher
from .ggn import ggn
from .hessian import hessian
from .kfac import kfac, kflr, kfra
from .registry import KINDS, REGISTRY, kind_table, register  # noqa: F401  (re-exported)

DENSE_KINDS = ("hessian", "ggn", "fisher", "empirical_fisher", "mc_fisher")
KRONECKER_KINDS = ("kfac", "kflr", "kfra")

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


class Operator:
    """A curvature matrix known through its products v -> M v (a LinearOperator or a callable):
    `@` stays matrix-free; `to_dense` (P products, cached) backs `solve`, `eigvalsh`, `blocks`."""

    def __init__(self, matvec, n, name, layer_slices=None):
        self.matvec, self.n_params, self.name = matvec, int(n), name
        self.layer_slices = layer_slices or [slice(0, self.n_params)]
        self._dense = None

    @property
    def shape(self):
        return (self.n_params, self.n_params)

    def __matmul__(self, v):
        v = flat_vector("v", v, self.n_params)
        if v.ndim == 1:
            return _product(self.name, self.matvec(v), (self.n_params,))
        return np.stack([self @ v[:, q] for q in range(v.shape[1])], axis=1)

    def dense(self):
        if self._dense is None:
            check_dense(self.name, self.n_params)
            M = self @ np.eye(self.n_params)
            self._dense = Dense(_symmetric(self.name, M), self.name, self.layer_slices)
        return self._dense

    def to_dense(self):
        return self.dense().M

    def blocks(self):
        return self.dense().blocks()

    def eigvalsh(self):
        return self.dense().eigvalsh()

    def solve(self, v, damping=0.0):
        return self.dense().solve(v, damping)

    def __repr__(self):
        return f"Operator({self.name!r}, P={self.n_params})"


def _product(name, out, shape):
    out = np.asarray(out, dtype=np.float64)
    if out.shape != shape:
        raise ValueError(f"{name}: the product M v has shape {out.shape}, expected {shape}")
    return out


def _symmetric(name, M):
    """M itself, after checking it is symmetric (to rounding): curvature matrices are."""
    gap = np.max(np.abs(M - M.T)) if M.size else 0.0
    if gap > 1e-10 * max(np.max(np.abs(M)), 1e-300):
        raise ValueError(f"{name}: the matrix is not symmetric (max |M − Mᵀ| = {gap:.3g}); curvature "
                         "matrices are — pass (M + M.T) / 2 if that is what you mean")
    return M


def is_outside(M):
    """Whether M is a matrix given directly (array, LinearOperator, callable) rather than a name."""
    return isinstance(M, (np.ndarray, LinearOperator)) or (callable(M) and not isinstance(M, str))


def as_matrix(M, n=None, name="extra", layer_slices=None):
    """Your own curvature matrix behind the same interface as `matrix`: a dense (P, P) array, a
    scipy LinearOperator, or a callable v -> M v (give n = P). n, when given (the problem's P),
    is checked against M's size; the message says both numbers."""
    if isinstance(M, (Dense, Operator)) or hasattr(M, "solve") and hasattr(M, "to_dense"):
        size = M.shape[0]
        obj = M
    elif isinstance(M, np.ndarray) or (not callable(M) and not isinstance(M, LinearOperator)
                                       and not isinstance(M, str) and np.ndim(M) == 2):
        A = np.asarray(M, dtype=np.float64)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"{name}: a curvature matrix must be square (P, P), got shape {A.shape}")
        if not np.all(np.isfinite(A)):
            raise ValueError(f"{name}: the matrix has NaN or infinite entries")
        size, obj = A.shape[0], None
    elif isinstance(M, LinearOperator):
        if M.shape[0] != M.shape[1]:
            raise ValueError(f"{name}: a curvature operator must be square, got shape {M.shape}")
        size, obj = M.shape[0], Operator(M.matvec, M.shape[0], name, layer_slices)
    elif callable(M):
        if n is None:
            raise ValueError(f"{name}: a callable v -> M v does not say its size; pass n=P")
        size, obj = int(n), Operator(M, n, name, layer_slices)
    else:
        raise TypeError(f"{name}: expected a curvature kind's name, a (P, P) array, a scipy "
                        f"LinearOperator or a callable v -> M v; got {type(M).__name__}")
    if n is not None and size != int(n):
        raise ValueError(f"{name}: the matrix is {size} x {size} but the problem has P = {int(n)} "
                         "parameters; it must act on curvlab's flat parameter layout")
    if obj is None:
        obj = Dense(_symmetric(name, A), name, layer_slices)
    return obj


def matrix(objective, w, kind, samples=1, seed=0, flavor="expand", **options):
    """The curvature matrix of the given kind at w (see module docstring and `kind_table()`). samples,
    seed: for the Monte-Carlo kinds; flavor: 'expand' or 'reduce' for the Kronecker kinds on
    conv layers; a kind's own options by name. kind may also be your own matrix (see
    `as_matrix`), checked against the problem's size."""
    obj = as_objective(objective)
    if is_outside(kind):
        P = obj.n_params if obj.n_params is not None else np.asarray(w).shape[0]
        slices = obj.model.layer_slices() if isinstance(obj, Problem) else None
        return as_matrix(kind, P, "your matrix", slices)
    if not isinstance(kind, str):
        raise TypeError(f"a curvature kind is a name such as 'ggn' or your own matrix (array, "
                        f"LinearOperator, callable); got {type(kind).__name__}")
    choice("curvature kind", kind, KINDS)
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
    build = REGISTRY[kind].build
    options = dict(samples=samples, seed=seed, flavor=flavor, **options)
    accepted = inspect.signature(build).parameters
    unknown = set(options) - set(accepted) - {"samples", "seed", "flavor"}
    if unknown:
        raise TypeError(f"curvature kind {kind!r} takes no option {sorted(unknown)}; its options: "
                        f"{[p for p in accepted if p not in ('problem', 'w')]}")
    return build(obj, w, **{k: v for k, v in options.items() if k in accepted})


def _dense_kind(name, fn):
    return lambda problem, w, **kw: Dense(fn(problem, w, **kw), name, problem.model.layer_slices())


register("hessian", _dense_kind("hessian", lambda p, w: hessian(p, w)), "Hessian ∇²L", "exact")
register("ggn", _dense_kind("ggn", lambda p, w: ggn(p, w)), "generalized Gauss-Newton (1/N) Σ JᵀBJ",
         "Schraudolph 2002; exact")
register("fisher", _dense_kind("fisher", lambda p, w: fisher(p, w, "true")), "true Fisher E_y[∇ℓ∇ℓᵀ]",
         "Amari 1998; exact expectation")
register("empirical_fisher", _dense_kind("empirical_fisher", lambda p, w: fisher(p, w, "empirical")),
         "empirical Fisher (1/N) Σ ∇ℓₙ∇ℓₙᵀ, data labels", "Kunstner et al. 2019")
register("mc_fisher", _dense_kind("mc_fisher", lambda p, w, samples=1, seed=0: fisher(
    p, w, "mc", samples=samples, seed=seed)), "Monte-Carlo Fisher, sampled labels", "Martens 2014")
register("kfac", lambda problem, w, samples=1, seed=0, flavor="expand": kfac(
    problem, w, samples=samples, seed=seed, flavor=flavor), "K-FAC: sampled S ⊗ A", "Martens & Grosse 2015")
register("kflr", lambda problem, w, flavor="expand": kflr(problem, w, flavor=flavor),
         "KFLR: exact S ⊗ A per layer", "Botev et al. 2017")
register("kfra", lambda problem, w, flavor="expand": kfra(problem, w, flavor=flavor),
         "KFRA: recursive, batch-averaged S ⊗ A", "Botev et al. 2017")
register("diagonal", lambda problem, w: diagonal(problem, w), "exact diagonal of the GGN", "exact")
