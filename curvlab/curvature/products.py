"""Matrix-free products: J v, Jᵀ u, H v (Pearlmutter), G v (Lin's two ways), F v, and the
finite-difference H v baseline; `operator` wraps them as a scipy LinearOperator.

Every product accepts one vector (P,) or a block of Q vectors (P, Q); a block is pushed
through the net in one batched pass. The `make_*` builders return closures that do the
per-point work (forward trace, stored Jacobians) once, for reuse across CG or Lanczos steps.
"""

import numpy as np
from autograd import grad as _ag_grad
from autograd import make_jvp as _ag_make_jvp
from scipy.sparse.linalg import LinearOperator

from .._checks import choice, flat_vector, nonnegative
from ..problem import Problem, as_objective, require_problem
from .registry import REGISTRY, call, get


def _columns(fn):
    """Lift a block product (P, Q) -> (P, Q) to accept (P,) too."""
    def product(v):
        v = np.asarray(v, dtype=np.float64)
        return fn(v[:, None])[:, 0] if v.ndim == 1 else fn(v)
    return product


def _defines_ggn(obj):
    """A generic objective that brings its own Gauss-Newton matrix (`cl.Objective(ggn=...)`)."""
    return not isinstance(obj, Problem) and getattr(as_objective(obj), "ggn", None) is not None


def _dense_product(objective, w):
    obj = as_objective(objective)
    w = obj.check(w)
    G = np.asarray(obj.ggn(w), dtype=np.float64)
    return _columns(lambda V: G @ flat_vector("v", V, len(w)))


# public products ------------------------------------------------------------------------------

def make_hvp(objective, w):
    """Closure v -> H v at w. For a Problem: Pearlmutter's R-operator on the layered net
    (R-forward then R-backward, about 3 gradients per vector; a block of vectors is one
    batched pass). For a generic function: autograd forward-over-reverse, one column at a time."""
    obj = as_objective(objective)
    if isinstance(obj, Problem):
        hv = obj.point(w).hv                     # the engine's, or a UnitNetwork's own
        return _columns(lambda V: hv(flat_vector("v", V, obj.n_params)))
    w = obj.check(w)
    jvp_of_grad = _ag_make_jvp(_ag_grad(obj.fun))(w)
    return _columns(lambda V: np.stack([jvp_of_grad(V[:, q])[1] for q in range(V.shape[1])], 1))


def hvp(objective, w, v):
    """Exact Hessian-vector product H v (v of shape (P,) or (P, Q))."""
    return make_hvp(objective, w)(v)


def make_ggnvp(problem, w, method="rop"):
    """Closure v -> G v, G = (1/N) Σ Jₙᵀ Bₙ Jₙ + λI, in one of Lin's two ways:
    'rop': J v by the R-operator, then a backward pass of B J v (no storage, ~2 gradients);
    'jacobian': store ∂z/∂s_l for all samples and outputs once (memory N·K·Σ n_l), then each
    product is a few einsums — cheaper per product when many products follow (CG)."""
    choice("ggnvp method", method, {"rop", "jacobian"})
    if _defines_ggn(problem):
        return _dense_product(problem, w)
    pt = require_problem(problem, "ggnvp").point(w)
    gv = pt.gv_rop if method == "rop" else pt.gv_jacobian
    return _columns(lambda V: gv(flat_vector("v", V, problem.n_params)))


def ggnvp(problem, w, v, method="rop"):
    """Gauss-Newton-vector product G v."""
    return make_ggnvp(problem, w, method)(v)


def make_fishervp(problem, w, kind="true"):
    """Closure v -> F v. kind='true': (1/N) Σ Jₙᵀ E_y[∇_zℓ ∇_zℓᵀ] Jₙ v + λI (the output Fisher
    from the model's distribution); kind='empirical': (1/N) Σ gₙ (gₙᵀ v) + λI with data labels."""
    choice("fisher kind", kind, {"true", "empirical"})
    if kind == "true" and _defines_ggn(problem):         # its Gauss-Newton matrix stands for F
        return _dense_product(problem, w)
    problem = require_problem(problem, "fishervp")
    pt = problem.point(w)
    fn = pt.fv_true if kind == "true" else pt.fv_empirical
    return _columns(lambda V: fn(flat_vector("v", V, problem.n_params)))


def fishervp(problem, w, v, kind="true"):
    """Fisher-vector product F v."""
    return make_fishervp(problem, w, kind)(v)


def jvp(problem, w, v):
    """Output Jacobian-vector product J v: (N, K) for v (P,), (Q, N, K) for a block (P, Q);
    (N, T, K) and (Q, N, T, K) for sequence outputs."""
    problem = require_problem(problem, "jvp")
    v = flat_vector("v", v, problem.n_params)
    out = problem.point(w).jv(v[:, None] if v.ndim == 1 else v)
    out = out.reshape(out.shape[:2] + problem.out_shape)
    return out[0] if v.ndim == 1 else out


def vjp(problem, w, u):
    """Σ_n Jₙᵀ uₙ for output cotangents u of shape (N, K) (or a block (Q, N, K)): (P,) / (P, Q);
    u (N, T, K) or (Q, N, T, K) for sequence outputs."""
    problem = require_problem(problem, "vjp")
    u = np.asarray(u, dtype=np.float64)
    shape = (problem.N,) + problem.out_shape
    if u.shape[u.ndim - len(shape):] != shape or u.ndim not in (len(shape), len(shape) + 1):
        raise ValueError(f"u must have shape {shape} (or (Q, {', '.join(map(str, shape))})), "
                         f"got {u.shape}")
    single = u.ndim == len(shape)
    u = u.reshape((-1, problem.N, problem.n_outputs))
    out = problem.point(w).jtu(u)
    return out[:, 0] if single else out


def fd_hvp(objective, w, v, r=1e-4, scheme="central"):
    """Finite-difference H v, the inexact baseline: (∇L(w + r v) − ∇L(w − r v)) / 2r
    ('central', error O(r²) plus rounding O(ε/r)) or (∇L(w + r v) − ∇L(w)) / r ('forward', O(r))."""
    obj = as_objective(objective)
    w = obj.check(w)
    v = flat_vector("v", v, w.shape[0])
    if v.ndim != 1:
        raise ValueError("fd_hvp takes one vector v of shape (P,)")
    r = nonnegative("r", r)
    if r == 0:
        raise ValueError("the finite-difference step r must be > 0")
    choice("scheme", scheme, {"central", "forward"})
    if scheme == "central":
        return (obj.grad(w + r * v) - obj.grad(w - r * v)) / (2 * r)
    return (obj.grad(w + r * v) - obj.grad(w)) / r


def operator(objective, w, kind="hessian", method="rop"):
    """The curvature matrix at w as a symmetric scipy `LinearOperator` (matvec and matmat),
    for Lanczos (`eigsh`), CG (`cg`) and friends, from the kind's matrix-free product: every
    registered kind with one (`cl.curvature.registry.kinds(matrix_free=True)`: 'hessian',
    'ggn', 'fisher' (true), 'empirical_fisher', ...). `method` picks Lin's GGN product ('rop'
    or 'jacobian'). A kind without a product: `cl.matrix(problem, w, kind).as_linear_operator()`."""
    make = get(kind).product
    if make is None:
        raise ValueError(
            f"kind {kind!r} has no matrix-free product; the kinds with one: "
            f"{[k for k, v in REGISTRY.items() if v.matrix_free]} — or use "
            f"cl.matrix(problem, w, {kind!r}).as_linear_operator()"
        )
    obj = as_objective(objective)
    fn = call(make, obj, w, method=method)
    P = obj.n_params if obj.n_params is not None else np.asarray(w).shape[0]
    return LinearOperator((P, P), matvec=fn, rmatvec=fn, matmat=fn, rmatmat=fn, dtype=np.float64)
