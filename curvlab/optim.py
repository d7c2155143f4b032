"""First- and second-order optimisers that record their trajectories.

`minimize(objective, w0, method, steps, **hyper)` runs one method on a Problem or a generic
objective and returns a `Trajectory`. Each method is a pair of functions in the jax
`optimizers` style: ``init(w0) -> state`` and ``update(k, w, state, obj) -> (w, state, info)``,
where `obj` is the objective of this step (the full problem or a mini-batch of it).

    gd, momentum, nesterov, adam                 first order
    newton (variant plain | damped | abs)        H, (H + ηI), |H| + ηI  (saddle-free)
    gauss_newton, natural_gradient               (G + ηI)⁻¹g, (F + ηI)⁻¹g
    kfac, kflr, kfra                             EMA Kronecker factors, damped factor-wise
    diagonal                                     EMA of the exact GGN diagonal
    hessian_free                                 CG on G + ηI, Martens' rule, LM, backtracking

and one more per registered curvature kind that names itself as an optimiser's curvature
(`register(..., optimizer=<its name>)`, read from the registry): a Kronecker-factored kind steps
like kfac (EMA factors), any other like gauss_newton with its own matrix. `method_names()` lists
them all; `needs_problem(method)` says whether a generic objective can use one.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from . import damping as _damping
from ._checks import choice, finite_array, nonnegative
from .curvature.base import Dense
from .curvature.diagonal import diag_ggn
from .curvature.ggn import ggn
from .curvature.hessian import hessian
from .curvature.kfac import KroneckerFactored
from .curvature.kinds import matrix
from .curvature.products import make_ggnvp
from .curvature.registry import REGISTRY
from .linalg import cg
from .problem import Objective, Problem, as_objective


@dataclass
class Trajectory:
    """What a run did: iterates from w0 on and, per iterate, the loss, gradient norm, step
    length, damping, wall time (cumulative, s) and the gradients / curvature-vector products /
    curvature builds spent to reach it (per step; row 0 is w0)."""

    method: str
    hyper: dict
    ws: np.ndarray
    losses: np.ndarray
    grad_norms: np.ndarray
    step_norms: np.ndarray
    dampings: np.ndarray
    times: np.ndarray
    n_grads: np.ndarray
    n_products: np.ndarray
    n_builds: np.ndarray
    status: str
    diverged: bool = False
    extra: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.losses)

    def __repr__(self):
        return (f"Trajectory({self.method!r}, steps={len(self) - 1}, loss {self.losses[0]:.4g} -> "
                f"{self.losses[-1]:.4g}, {self.status})")


def _info(grads=1, products=0, builds=0, damping=np.nan, **kw):
    return dict(grads=grads, products=products, builds=builds, damping=damping, **kw)


# first order ---------------------------------------------------------------------------------

def gd(lr=0.1):
    def init(w0):
        return None

    def update(k, w, state, obj):
        return w - lr * obj.grad(w), state, _info()
    return init, update


def momentum(lr=0.1, beta=0.9):
    """Heavy ball: v ← βv − lr ∇L(w), w ← w + v."""
    def init(w0):
        return np.zeros_like(w0)

    def update(k, w, v, obj):
        v = beta * v - lr * obj.grad(w)
        return w + v, v, _info()
    return init, update


def nesterov(lr=0.1, beta=0.9):
    """Nesterov momentum: the gradient is taken at the look-ahead point w + βv."""
    def init(w0):
        return np.zeros_like(w0)

    def update(k, w, v, obj):
        v = beta * v - lr * obj.grad(w + beta * v)
        return w + v, v, _info()
    return init, update


def adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8):
    def init(w0):
        return np.zeros_like(w0), np.zeros_like(w0)

    def update(k, w, state, obj):
        m, v = state
        g = obj.grad(w)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        mhat, vhat = m / (1 - beta1 ** (k + 1)), v / (1 - beta2 ** (k + 1))
        return w - lr * mhat / (np.sqrt(vhat) + eps), (m, v), _info()
    return init, update


# second order, dense -------------------------------------------------------------------------

def _maybe_adapt(adapt, eta, obj, w, p, C, g):
    """Levenberg–Marquardt (if asked): update η from this step's reduction ratio ρ and reject a
    step that raised the loss. Returns (new w, new η, ρ, accepted)."""
    if not adapt:
        return w + p, eta, np.nan, True
    rho = _damping.reduction_ratio(obj, w, p, C, g)
    accepted = bool(rho > 0)
    return (w + p if accepted else w), _damping.levenberg_marquardt(eta, rho), rho, accepted


def newton(lr=1.0, damping=None, variant=None):
    """Newton's step −lr (H + ηI)⁻¹g. variant='plain' (η = 0), 'damped' (η = damping) or
    'abs' (|H| + ηI with |H| = U|Λ|Uᵀ: the saddle-free Newton of Dauphin et al.). Without a
    variant: 'damped' when a damping is given, 'plain' otherwise."""
    if variant is None:
        variant = "plain" if not damping else "damped"
    choice("newton variant", variant, {"plain", "damped", "abs"})
    if variant == "plain" and damping:
        raise ValueError(f"newton variant='plain' takes no damping (got damping={damping}); use "
                         "variant='damped' or 'abs', or leave variant out")
    eta = 0.0 if variant == "plain" else nonnegative("damping", damping or 0.0)

    def init(w0):
        return None

    def update(k, w, state, obj):
        H = hessian(obj, w)
        g = obj.grad(w)
        if variant == "abs":
            lam, U = np.linalg.eigh(H)
            p = -U @ ((U.T @ g) / (np.abs(lam) + eta))
        else:
            p = -Dense(H, "hessian").solve(g, eta)
        return w + lr * p, state, _info(products=len(w), builds=1, damping=eta)
    return init, update


def curvature_step(kind, lr=1.0, damping=1e-4, adapt_damping=False, **options):
    """−lr (C + ηI)⁻¹g with the registered curvature kind C rebuilt at every step (`options`
    go to its build, e.g. samples). With adapt_damping, η follows Levenberg–Marquardt and a
    step that raises the loss is rejected."""
    state0 = {"eta": nonnegative("damping", damping)}
    REGISTRY[kind]                                      # a known kind, before any step

    def init(w0):
        return dict(state0)

    def update(k, w, state, obj):
        C = matrix(obj, w, kind, **options)
        g = obj.grad(w)
        p = -lr * C.solve(g, state["eta"])
        eta_used = state["eta"]
        w_new, state["eta"], rho, ok = _maybe_adapt(adapt_damping, eta_used, obj, w, p, C, g)
        return w_new, state, _info(products=len(w), builds=1, damping=eta_used, rho=rho,
                                   accepted=ok)
    return init, update


def gauss_newton(lr=1.0, damping=1e-4, adapt_damping=False):
    """−lr (G + ηI)⁻¹g with the exact dense GGN. With adapt_damping, η follows
    Levenberg–Marquardt and a step that raises the loss is rejected."""
    return curvature_step("ggn", lr, damping, adapt_damping)


def natural_gradient(lr=1.0, damping=1e-4, adapt_damping=False, fisher_kind="true"):
    """−lr (F + ηI)⁻¹g with the exact dense Fisher ('true' or 'empirical')."""
    choice("fisher_kind", fisher_kind, {"true", "empirical"})
    return curvature_step("fisher" if fisher_kind == "true" else "empirical_fisher", lr, damping,
                          adapt_damping)


# second order, factored ----------------------------------------------------------------------

def kronecker(kind, lr=1.0, damping=1e-3, ema=0.95, tikhonov=True, samples=1, adapt_damping=False,
              flavor="expand"):
    """K-FAC / KFLR / KFRA with exponential moving averages of the factors,
    A ← ema·A + (1 − ema)·A_new (likewise S), and damped factor-wise solves: Martens & Grosse's
    factored Tikhonov damping by default (robust with stale EMA factors), or tikhonov=False for
    the exact damped inverse of the Kronecker matrix. `flavor` ('expand' or 'reduce') picks the
    factors of conv layers (see curvlab.curvature.kfac)."""
    if not 0 <= ema < 1:
        raise ValueError(f"ema must be in [0, 1), got {ema}")
    entry = REGISTRY[kind]

    def init(w0):
        return {"factors": None, "eta": nonnegative("damping", damping)}

    def update(k, w, state, obj):
        if not isinstance(obj, Problem):
            raise TypeError(f"{kind} needs a Problem (a layered model)")
        # a sampled kind draws fresh targets at every step
        new = matrix(obj, w, kind, samples=samples, seed=k if entry.sampled else 0,
                     flavor=flavor).factors
        old = state["factors"]
        fac = new if old is None else [(ema * A0 + (1 - ema) * A1, ema * S0 + (1 - ema) * S1)
                                       for (A0, S0), (A1, S1) in zip(old, new)]
        state["factors"] = fac
        C = KroneckerFactored(fac, obj.l2, kind)
        g = obj.grad(w)
        p = -lr * C.solve(g, state["eta"], method="tikhonov" if tikhonov else "eig")
        eta_used = state["eta"]
        w_new, state["eta"], rho, ok = _maybe_adapt(adapt_damping, eta_used, obj, w, p, C, g)
        return w_new, state, _info(builds=1, damping=eta_used, rho=rho, accepted=ok)
    return init, update


def diagonal(lr=1.0, damping=1e-3, ema=0.95):
    """−lr g / (d + η) with d an EMA of the exact diagonal of the GGN."""
    def init(w0):
        return None

    def update(k, w, d, obj):
        if not isinstance(obj, Problem):
            raise TypeError("diagonal needs a Problem (a layered model)")
        new = diag_ggn(obj, w)
        d = new if d is None else ema * d + (1 - ema) * new
        return w - lr * obj.grad(w) / (d + damping), d, _info(builds=1, damping=damping)
    return init, update


def hessian_free(damping=1.0, maxiter=100, decay=0.95, eps=5e-4):
    """Martens (2010): CG on (G + ηI)p = −g from the decayed previous solution, stopped by the
    relative-progress rule; CG backtracking (the best of the kept iterates, scanning back from
    the last); Levenberg–Marquardt η; a step that raises the loss is rejected."""
    def init(w0):
        return {"eta": nonnegative("damping", damping), "p": np.zeros_like(w0)}

    def update(k, w, state, obj):
        if not isinstance(obj, Problem):
            raise TypeError("hessian_free needs a Problem")
        eta = state["eta"]
        gv = make_ggnvp(obj, w, method="jacobian")
        g = obj.grad(w)
        res = cg(lambda v: gv(v) + eta * v, -g, x0=decay * state["p"], maxiter=maxiter, eps=eps)
        L0 = float(obj.loss(w))
        best_p, best_L = res.x, float(obj.loss(w + res.x))
        for _, p in reversed(res.iterates[:-1]):          # backtrack while it keeps improving
            L = float(obj.loss(w + p))
            if L > best_L:
                break
            best_p, best_L = p, L
        pred = -(g @ best_p + 0.5 * best_p @ gv(best_p))
        rho = (L0 - best_L) / pred if pred > 0 else np.nan
        state["eta"] = _damping.levenberg_marquardt(eta, rho)
        state["p"] = res.x
        accepted = best_L < L0
        w_new = w + best_p if accepted else w
        return w_new, state, _info(products=res.iterations + 2 + len(res.iterates), damping=eta,
                                   rho=rho, cg_iterations=res.iterations, accepted=accepted)
    return init, update


# name: (factory of (init, update), whether it needs a Problem); the curvature kinds' own
# methods (kfac, kflr, kfra, ...) come from the registry, see `factory`.
METHODS = {
    "gd": (gd, False), "momentum": (momentum, False), "nesterov": (nesterov, False),
    "adam": (adam, False), "newton": (newton, False), "gauss_newton": (gauss_newton, False),
    "natural_gradient": (natural_gradient, False), "diagonal": (diagonal, True),
    "hessian_free": (hessian_free, True),
}


def _kind_methods():
    """{method: kind} for the registered kinds that name a method of their own."""
    return {k.optimizer: k.name for k in REGISTRY.values()
            if k.optimizer and k.optimizer not in METHODS}


def method_names():
    """Every method `minimize` takes: the fixed ones, then the curvature kinds' own."""
    return list(METHODS) + list(_kind_methods())


def needs_problem(method):
    """Whether `method` needs a Problem (a layered model and data), not a generic objective."""
    choice("method", method, method_names())
    if method in METHODS:
        return METHODS[method][1]
    return REGISTRY[_kind_methods()[method]].needs_problem


def factory(method):
    """The method's builder: `factory(method)(**hyper) -> (init, update)` (jax optimizers'
    style; the module docstring lists the methods)."""
    choice("method", method, method_names())
    if method in METHODS:
        return METHODS[method][0]
    kind = _kind_methods()[method]
    if REGISTRY[kind].structure == "kronecker":
        return lambda **h: kronecker(kind, **h)
    return lambda **h: curvature_step(kind, **h)


def minimize(objective, w0, method="gd", steps=100, batch_size=None, seed=0, blowup=1e8,
             gtol=0.0, **hyper):
    """Run `method` for `steps` steps from w0 and record the trajectory.

    objective: a Problem, an Objective or any autograd-differentiable function of a flat vector.
    batch_size: for a Problem, each step's gradient and curvature use a fresh random mini-batch
    (seeded); losses are always recorded on the whole problem. The run stops early, saying so in
    `status`, if the loss turns non-finite or exceeds `blowup` × (|L(w0)| + 1) (diverged), or if
    ‖∇L‖ ≤ gtol (converged). `hyper` are the method's own settings (lr, damping, beta, ...).
    """
    build = factory(method)
    obj = as_objective(objective)
    w = obj.check(w0).copy()
    try:
        init, update = build(**hyper)
    except TypeError as e:
        raise TypeError(f"bad settings for method {method!r}: {e}") from None
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if batch_size is not None:
        if not isinstance(obj, Problem):
            raise TypeError("batch_size needs a Problem (a data set to sample from)")
        batch_size = int(batch_size)
        if not 1 <= batch_size <= obj.N:
            raise ValueError(f"batch_size must be in 1..{obj.N}, got {batch_size}")
    rng = np.random.default_rng(seed)

    L0 = float(obj.loss(w))
    if not np.isfinite(L0):
        raise ValueError(f"the loss at w0 is {L0}; start from a point where it is finite")
    rec = {key: [] for key in ("ws", "losses", "grad_norms", "step_norms", "dampings", "times",
                               "n_grads", "n_products", "n_builds")}
    extra = {"rho": [np.nan], "accepted": [True]}

    def record(w, L, gnorm, snorm, info, t):
        for key, val in zip(rec, (w.copy(), L, gnorm, snorm, info["damping"], t, info["grads"],
                                  info["products"], info["builds"])):
            rec[key].append(val)

    record(w, L0, float(np.linalg.norm(obj.grad(w))), 0.0, _info(grads=0), 0.0)
    state = init(w)
    status, diverged, t0 = f"completed {steps} steps", False, time.perf_counter()
    for k in range(steps):
        if gtol and rec["grad_norms"][-1] <= gtol:
            status = f"converged at step {k}: gradient norm {rec['grad_norms'][-1]:.2e} <= {gtol:g}"
            break
        batch = obj.subset(rng.choice(obj.N, batch_size, replace=False)) if batch_size else obj
        try:
            w_new, state, info = update(k, w, state, batch)
        except np.linalg.LinAlgError as e:
            status = f"stopped at step {k}: {e}"
            break
        t = time.perf_counter() - t0
        L = float(obj.loss(w_new)) if np.all(np.isfinite(w_new)) else np.nan
        if not np.isfinite(L) or L > blowup * (abs(L0) + 1):
            status = f"diverged at step {k + 1}: loss {L:.3g}; try a smaller lr or more damping"
            diverged = True
            break
        g = obj.grad(w_new)
        record(w_new, L, float(np.linalg.norm(g)), float(np.linalg.norm(w_new - w)), info, t)
        extra["rho"].append(info.get("rho", np.nan))
        extra["accepted"].append(info.get("accepted", True))
        w = w_new
    arrays = {key: np.array(val) for key, val in rec.items()}
    return Trajectory(
        method,
        dict(hyper),
        status=status,
        diverged=diverged,
        extra={key: np.array(v) for key, v in extra.items()},
        **arrays,
    )


# affine reparameterisation -------------------------------------------------------------------


class Reparameterized(Objective):
    """f̃(w̃) = f(R w̃ + b) for an invertible R: its gradient is Rᵀ∇f, its Hessian RᵀHR + (0),
    its GGN RᵀGR. Newton and Gauss-Newton steps map back to the same steps in w; gradient
    descent's do not (Grosse's lecture)."""

    def __init__(self, objective, R, b=None):
        base = as_objective(objective)
        R = finite_array("R", R, ndim=2)
        P = R.shape[0]
        if R.shape != (P, P) or np.linalg.matrix_rank(R) < P:
            raise ValueError(f"R must be an invertible square matrix, got shape {R.shape}")
        b = np.zeros(P) if b is None else finite_array("b", b, ndim=1)
        self.base, self.R, self.b = base, R, b
        fun = lambda wt: (
            base.loss(R @ wt + b) if isinstance(base, Problem) else base.fun(R @ wt + b)
        )
        if isinstance(base, Problem):
            G = lambda wt: R.T @ ggn(base, R @ wt + b) @ R
        elif base.ggn is not None:
            G = lambda wt: R.T @ base.ggn(R @ wt + b) @ R
        else:
            G = None
        super().__init__(fun, P, f"reparameterized {getattr(base, 'name', 'problem')}", ggn=G)

    def to_original(self, wt):
        """w = R w̃ + b, for one vector or rows of vectors."""
        wt = np.asarray(wt, dtype=np.float64)
        return wt @ self.R.T + self.b

    def from_original(self, w):
        return np.linalg.solve(self.R, (np.asarray(w, dtype=np.float64) - self.b).T).T


def reparameterize(objective, R, b=None):
    """The objective in the coordinates w = R w̃ + b."""
    return Reparameterized(objective, R, b)
