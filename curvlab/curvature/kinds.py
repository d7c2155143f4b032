"""Every curvature matrix behind one interface, chosen by name.

`matrix(problem, w, kind)` builds the registered kind (`cl.kind_table()` lists them with what
each can do) and returns a `Curvature` object: `.to_dense()`, `@ v`, `.solve(v, damping)`
(cached factorisations, so sweeping the damping is cheap), `.blocks()` (per-layer diagonal
blocks), `.eigvalsh()` and `.as_linear_operator()`. Wherever a kind is accepted, your own
matrix M is too (`as_matrix`): a dense (P, P) array, a scipy LinearOperator, or a callable
v -> M v — with its size checked against the problem's P.
"""

import inspect

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .._checks import as_numpy
from ..problem import Problem, as_objective
from .base import Curvature, Dense, Operator, symmetric
from .registry import KINDS, REGISTRY, call, get, kind_table, register  # noqa: F401  (re-exported)


def is_outside(M):
    """Whether M is a matrix given directly (array, LinearOperator, callable, a curvature
    object, or anything array-like such as a torch tensor) rather than a kind's name."""
    return not isinstance(M, str)


def _array(M):
    """An array-like (numpy, a CPU torch tensor, nested lists) as float64, or None."""
    M = as_numpy(M)                                    # a torch tensor: no autograd graph
    try:
        return np.asarray(M, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def as_matrix(M, n=None, name="extra", layer_slices=None):
    """Your own curvature matrix behind the same interface as `matrix`: a `Curvature` object,
    a dense (P, P) array (or a tensor), a scipy LinearOperator, or a callable v -> M v (give
    n = P). n, when given (the problem's P), is checked against M's size; the message says both
    numbers."""
    if isinstance(M, Curvature):
        obj = M
    elif isinstance(M, LinearOperator):
        if M.shape[0] != M.shape[1]:
            raise ValueError(f"{name}: a curvature operator must be square, got shape {M.shape}")
        obj = Operator(M.matvec, M.shape[0], name, layer_slices)
    elif callable(M):
        if n is None:
            raise ValueError(f"{name}: a callable v -> M v does not say its size; pass n=P")
        obj = Operator(M, n, name, layer_slices)
    else:
        A = _array(M)
        if A is None or A.ndim != 2:
            raise TypeError(f"{name}: expected a curvature kind's name, a (P, P) array, a scipy "
                            f"LinearOperator or a callable v -> M v; got {type(M).__name__}")
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"{name}: a curvature matrix must be square (P, P), got shape "
                             f"{A.shape}")
        if n is not None and A.shape[0] != int(n):
            raise ValueError(_size_message(name, A.shape[0], n))
        if not np.all(np.isfinite(A)):
            raise ValueError(f"{name}: the matrix has NaN or infinite entries")
        obj = Dense(symmetric(name, A), name, layer_slices)
    if n is not None and obj.shape[0] != int(n):
        raise ValueError(_size_message(name, obj.shape[0], n))
    return obj


def _size_message(name, size, n):
    return (f"{name}: the matrix is {size} x {size} but the problem has P = {int(n)} parameters; "
            "it must act on curvlab's flat parameter layout")


def matrix(objective, w, kind, samples=1, seed=0, flavor="expand", **options):
    """The curvature matrix of the given kind at w (module docstring, `kind_table()`).

    samples, seed: for the Monte-Carlo kinds; flavor: 'expand' or 'reduce' for the Kronecker
    kinds on layers shared over locations; a kind's own options by name. kind may also be your
    own matrix (see `as_matrix`), checked against the problem's size."""
    obj = as_objective(objective)
    if is_outside(kind):
        P = obj.n_params if obj.n_params is not None else np.asarray(w).shape[0]
        slices = obj.model.layer_slices() if isinstance(obj, Problem) else None
        return as_matrix(kind, P, "your matrix", slices)
    entry = get(kind)
    if entry.needs_problem and not isinstance(obj, Problem):
        generic = [k for k, v in REGISTRY.items() if not v.needs_problem]
        raise TypeError(f"{kind!r} needs a Problem; a generic objective offers {generic} (the "
                        "Gauss-Newton kinds when it defines ggn=...)")
    accepted = _parameters(entry.build)
    unknown = set(options) - accepted
    if unknown:
        raise TypeError(f"curvature kind {kind!r} takes no option {sorted(unknown)}; its "
                        f"options: {sorted(accepted - {'problem', 'w'})}")
    return call(entry.build, obj, w, samples=samples, seed=seed, flavor=flavor, **options)


def _parameters(fn):
    return set(inspect.signature(fn).parameters)
