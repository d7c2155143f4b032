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

from .. import engine
from .._checks import choice, flat_vector, nonnegative
from .. import units
from ..problem import Problem, as_objective, require_problem
from ..units import UnitNetwork


def _columns(fn):
    """Lift a block product (P, Q) -> (P, Q) to accept (P,) too."""
    def product(v):
        v = np.asarray(v, dtype=np.float64)
        return fn(v[:, None])[:, 0] if v.ndim == 1 else fn(v)
    return product


class _Point:
    """Everything about a Problem at w that products reuse: W̄, trace, ∂ℓ/∂z, δ, B."""

    def __init__(self, problem, w):
        self.problem, self.w = problem, problem.check(w)
        self.Wbars, self.tr = problem.trace(self.w)
        self.N, self.l2 = problem.N, problem.l2
        self._cache = {}

    def lazy(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def r(self):
        return self.lazy("r", lambda: self.problem.lossfn.dz(self.tr.z, self.problem.y))

    @property
    def backprop(self):
        """Per-sample backprop of ∂ℓ/∂z: (δ_l, ∂ℓ/∂a_l), each (N, T_l, n_l) per layer."""
        def make():
            deltas, grads_a = engine.backward(self.problem.model, self.Wbars, self.tr, self.r[None],
                                              with_a=True)
            return [d[0] for d in deltas], [g[0] for g in grads_a]
        return self.lazy("backprop", make)

    @property
    def deltas(self):
        return self.backprop[0]

    @property
    def grads_a(self):
        return self.backprop[1]

    @property
    def sqrt_seeds(self):
        """The columns of the factor C of B = C Cᵀ as output seeds (R, N, K): their backprops give
        the type-2 (exact-GGN) quantities."""
        return self.lazy("sqrt_seeds", lambda: self.problem.lossfn.sqrt_hessian(
            self.tr.z, self.problem.y).transpose(2, 0, 1))

    @property
    def B(self):
        return self.lazy("B", lambda: self.problem.lossfn.hessian(self.tr.z, self.problem.y))

    @property
    def D(self):
        """Lin's stored Jacobians ∂z/∂s_l for all samples and outputs: (K, N, T_l, n_l) per layer,
        N·K·Σ_l T_l n_l numbers in all (Lin's memory count)."""
        def make():
            K = self.tr.z.shape[1]
            seed = np.broadcast_to(np.eye(K)[:, None, :], (K, self.N, K))
            return self.backward(seed)
        return self.lazy("D", make)

    def backward(self, seed, with_a=False):
        """Backprop of output seeds (Q, N, K): δ_l (Q, N, T_l, n_l) per layer."""
        return engine.backward(self.problem.model, self.Wbars, self.tr, seed, with_a)

    def Bu(self, U):
        """B U for output directions U (Q, N, K), per sample, without forming B."""
        return self.problem.lossfn.hessian_product(self.tr.z, self.problem.y, U)

    def split(self, V):
        return engine.split_directions(self.problem.model, V)

    # products on blocks (P, Q) ---------------------------------------------------------------
    def jv(self, V):
        """J V: (Q, N, K) by one batched R-forward pass."""
        return engine.rforward(self.problem.model, self.Wbars, self.tr, self.split(V))[2]

    def jtu(self, U):
        """Σ_n J_nᵀ U_n for Q output cotangents U (Q, N, K): (P, Q)."""
        return engine.weight_grads(self.tr, self.backward(U))

    def hv(self, V):
        Vs = self.split(V)
        model = self.problem.model
        Rs, Rp, Rz = engine.rforward(model, self.Wbars, self.tr, Vs)
        HV = engine.rbackward(model, self.Wbars, self.tr, self.deltas, self.grads_a, Rs, Rp, Vs,
                              self.Bu(Rz))
        return HV / self.N + self.l2 * V

    def gv_rop(self, V):
        """Lin (b): J v by the R-operator, then a backward pass with B J v in place of ∂ℓ/∂z."""
        BJv = self.Bu(self.jv(V))
        return self.jtu(BJv) / self.N + self.l2 * V

    def gv_jacobian(self, V):
        """Lin (a): reuse the stored ∂z/∂s_l; memory ∝ samples × outputs × units."""
        Jv = 0.0
        for D, ab, Vl in zip(self.D, self.tr.abar, self.split(V)):
            Jv = Jv + np.einsum("knti,qnti->qnk", D, engine.times_abar(ab, Vl))
        u = self.Bu(Jv)
        deltas = [np.einsum("qnk,knti->qnti", u, D) for D in self.D]
        return engine.weight_grads(self.tr, deltas) / self.N + self.l2 * V

    def fv_true(self, V):
        F = self.lazy("F", lambda: self.problem.lossfn.fisher_factor(self.tr.z))
        FJv = np.einsum("nkr,njr,qnj->qnk", F, F, self.jv(V))
        return self.jtu(FJv) / self.N + self.l2 * V

    def fv_empirical(self, V):
        G = self.lazy("g_n", lambda: engine.jacobian_rows(self.tr, self.backward(self.r[None]))[0])  # (N, P)
        return G.T @ (G @ V) / self.N + self.l2 * V


# public products ------------------------------------------------------------------------------

def make_hvp(objective, w):
    """Closure v -> H v at w. For a Problem: Pearlmutter's R-operator on the layered net
    (R-forward then R-backward, about 3 gradients per vector; a block of vectors is one
    batched pass). For a generic function: autograd forward-over-reverse, one column at a time."""
    obj = as_objective(objective)
    if isinstance(obj, Problem) and isinstance(obj.model, UnitNetwork):
        hv = units.make_hvp(obj, w)
        return _columns(lambda V: hv(flat_vector("v", V, obj.n_params)))
    if isinstance(obj, Problem):
        pt = _Point(obj, w)
        return _columns(lambda V: pt.hv(flat_vector("v", V, obj.n_params)))
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
    problem = require_problem(problem, "ggnvp")
    choice("ggnvp method", method, {"rop", "jacobian"})
    if isinstance(problem.model, UnitNetwork):
        gv = units.make_ggnvp(problem, w)
        return _columns(lambda V: gv(flat_vector("v", V, problem.n_params)))
    pt = _Point(problem, w)
    fn = pt.gv_rop if method == "rop" else pt.gv_jacobian
    return _columns(lambda V: fn(flat_vector("v", V, problem.n_params)))


def ggnvp(problem, w, v, method="rop"):
    """Gauss-Newton-vector product G v."""
    return make_ggnvp(problem, w, method)(v)


def make_fishervp(problem, w, kind="true"):
    """Closure v -> F v. kind='true': (1/N) Σ Jₙᵀ E_y[∇_zℓ ∇_zℓᵀ] Jₙ v + λI (the output Fisher
    from the model's distribution); kind='empirical': (1/N) Σ gₙ (gₙᵀ v) + λI with data labels."""
    problem = require_problem(problem, "fishervp")
    choice("fisher kind", kind, {"true", "empirical"})
    pt = _Point(problem, w)
    fn = pt.fv_true if kind == "true" else pt.fv_empirical
    return _columns(lambda V: fn(flat_vector("v", V, problem.n_params)))


def fishervp(problem, w, v, kind="true"):
    """Fisher-vector product F v."""
    return make_fishervp(problem, w, kind)(v)


def jvp(problem, w, v):
    """Output Jacobian-vector product J v: (N, K) for v (P,), (Q, N, K) for a block (P, Q)."""
    problem = require_problem(problem, "jvp")
    v = flat_vector("v", v, problem.n_params)
    out = _Point(problem, w).jv(v[:, None] if v.ndim == 1 else v)
    return out[0] if v.ndim == 1 else out


def vjp(problem, w, u):
    """Σ_n Jₙᵀ uₙ for output cotangents u of shape (N, K) (or a block (Q, N, K)): (P,) / (P, Q)."""
    problem = require_problem(problem, "vjp")
    u = np.asarray(u, dtype=np.float64)
    shape = (problem.N, problem.n_outputs)
    if u.shape[-2:] != shape or u.ndim not in (2, 3):
        raise ValueError(f"u must have shape {shape} (or (Q, {shape[0]}, {shape[1]})), got {u.shape}")
    out = _Point(problem, w).jtu(u[None] if u.ndim == 2 else u)
    return out[:, 0] if u.ndim == 2 else out


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


OPERATOR_KINDS = {"hessian", "ggn", "fisher", "empirical_fisher"}


def operator(objective, w, kind="hessian", method="rop"):
    """The curvature matrix at w as a symmetric scipy `LinearOperator` (matvec and matmat),
    for Lanczos (`eigsh`), CG (`cg`) and friends. kind: 'hessian', 'ggn', 'fisher' (true
    Fisher) or 'empirical_fisher'; `method` picks Lin's GGN product ('rop' or 'jacobian')."""
    choice("operator kind", kind, OPERATOR_KINDS)
    obj = as_objective(objective)
    if kind == "hessian":
        fn = make_hvp(obj, w)
    elif kind == "ggn":
        fn = make_ggnvp(obj, w, method)
    else:
        fn = make_fishervp(obj, w, "true" if kind == "fisher" else "empirical")
    P = obj.n_params if obj.n_params is not None else np.asarray(w).shape[0]
    return LinearOperator((P, P), matvec=fn, rmatvec=fn, matmat=fn, rmatmat=fn, dtype=np.float64)
