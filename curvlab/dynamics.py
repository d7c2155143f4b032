"""Curvature over training: run an optimiser of `cl.optim` and watch the Hessian move.

    run = cl.dynamics.train(problem, w0, method="gd", lr=0.5, steps=2000, every=10,
                            track=("sharpness",), **hyper)

records the loss at every step and, at step 0, every `every`-th step and the last, the weights
and the tracked quantities. The optimiser is `cl.optim`'s own (its `(init, update)` pair,
driven here step by step: "gd", "momentum" (heavy ball), "nesterov", "adam", and the
curvature methods); nothing here re-implements an update rule.

Tracked quantities (`track`: names, or a dict {name: options}); H = ∇²L(w) at the recorded w,
λ₁ ≥ λ₂ ≥ … its eigenvalues, u₁, u₂, … their unit eigenvectors:

    "sharpness"                 λ₁ (the largest algebraic eigenvalue), exact (below)
    "top_eigs"      k=5         λ₁ … λ_k, largest first: run.top_eigs (M, k)
    "trace"                     tr H = Σᵢ λᵢ, exact (dense H, or the exact diagonal
                                `diag_hessian` of a layered net above DENSE_LIMIT)
    "eigvals"                   every eigenvalue, ascending (M, P): needs the dense H
    "density"       probes=10, steps=30, seed=0, sigma=None
                                the spectral density by stochastic Lanczos quadrature
                                (`cl.linalg.slq`): run.slq_nodes / run.slq_weights
                                (M, probes, steps) and run.density, a list of (grid, φ) with
                                φ(t) = mean over probes of Σᵢ wᵢ N(t; θᵢ, σ²), normalised to
                                integrate to 1 over the grid (as `cl.slq_density` computes it)
    "grad_overlap"  k=C         Gur-Ari et al. (2018): the share of ‖∇L‖² in the top-k
                                eigenspace, Σᵢ≤ₖ (uᵢᵀ∇L)² / ‖∇L‖² ∈ [0, 1]; k defaults to
                                the number of outputs C of a Problem (the classes), 1 otherwise
    "preconditioned_sharpness"  Adam only (Cohen et al. 2022): λ_max(P^-½ H P^-½) with
                                P = (1 − β₁^{t+1}) diag(√v̂ₜ₊₁ + ε), v̂ₜ₊₁ = vₜ₊₁ / (1 − β₂^{t+1})
                                the bias-corrected second moment *after* the update at step t
                                (the preconditioner that step used)
    any registered kind         its top eigenvalue (e.g. "ggn", "kflr", "fisher"): run.kinds[name]
                                (options: the kind's build options, e.g. samples=, seed=)

`run[name]` gives any tracked quantity by its name.

How λ₁ is found, exactly either way: for P ≤ DENSE_LIMIT the dense Hessian (`cl.hessian`) and
`numpy.linalg.eigh`; above, Lanczos with full reorthogonalisation on Pearlmutter's matrix-free
Hv, run until the top Ritz pairs' residuals are below LANCZOS_TOL (relative) — in practice
λ₁ to rounding — and **warm-started** from the previous recorded step's top eigenvector(s),
plus a seeded random part (WARM_NOISE) so that no direction is absent from the start and a new
top eigenvector is found (tested with the old one now second, 1 % below). What it saves
(bench/results_dynamics.md): stopping at the residual, with no restarts, takes about a third
fewer products than ARPACK to the same accuracy; the warm start about a tenth fewer again on an
edge-of-stability trajectory, where the top eigenvector turns between recorded steps (more when
it does not). For P ≤ DENSE_LIMIT, training runs on one BLAS thread: threads do not speed up
products of that size, and on a busy machine their spinning slows each step several times.

Everything is float64, in curvlab's flat parameter layout (`curvlab.nn`). A run over 2 s shows
a tqdm progress bar (progress=False: never; True: at once); or pass a function,
progress(done, steps), called after each optimiser step with the steps done so far (an app's
status line; it is called from the training loop, so keep it cheap or throttle it). A run served
from the cache makes no progress calls.

Stability thresholds (`run.threshold`), for the quadratic model L = ½ λ x² along an
eigenvector of curvature λ, with step size η: the iteration is stable iff λ is below

    gd         2/η
    momentum   (2 + 2β)/η                 heavy ball, v ← βv − η∇L, w ← w + v
    nesterov   (2 + 2β)/((1 + 2β)η)       gradient at the look-ahead w + βv
    adam       (2 + 2β₁)/((1 − β₁)η)      on the *preconditioned* sharpness (38/η at β₁ = 0.9)
    others     None                       (Newton, Gauss-Newton, K-FAC, Hessian-free, …)

These are quadratic-model thresholds. That full-batch training of a neural net drives the
sharpness up to them (progressive sharpening) and then hovers there while the loss keeps
falling, non-monotonically (the edge of stability, Cohen et al. 2021, 2022), is an empirical
finding, which `notebooks/dynamics.ipynb` reproduces; nothing here assumes it.

Divergence (the loss turns non-finite or exceeds `blowup` × (|L(w0)| + 1)) stops the run; it is
reported, not raised: `run.diverged`, `run.diverged_step` (the step whose loss blew up) and
`run.diverged_sharpness` (λ₁ at the last finite iterate, computed even when not tracked), and
a `run.status` sentence. The last finite iterate is the last recorded step.

Results cache: `train` is deterministic (the Lanczos starts and SLQ probes are seeded), so its
runs are kept in a module-level LRU cache of CACHE_SIZE runs, keyed by the identity of the
problem object (held by weak reference: a new problem object with equal data is a new key, and
a run is never handed to a later object that reuses a collected one's id) and by every
setting (w0's bytes, method, lr, steps, every, track and its options, hyper, solver,
warm_start, blowup, DENSE_LIMIT). An app
that redraws a view calls `train` again with the same settings and gets the same run back at
once. The cache assumes a problem is not mutated in place after a run (make a new Problem);
pass cache=False to bypass it, `cache_clear()` to empty it, `cache_info()` to inspect it. A
cached run's arrays are read-only, since every caller shares them.
"""

import hashlib
import inspect
import time
import weakref
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import optim
from ._checks import DenseTooLargeError, check_dense, short_repr
from .curvature.hessian import hessian
from .curvature.kinds import matrix
from .curvature.products import operator
from .curvature.registry import REGISTRY, get
from .linalg import slq, slq_smooth
from .problem import Problem, as_objective

# λ₁ by dense eigh up to this many parameters, by warm-started Lanczos above.
DENSE_LIMIT = 300
# Quantities that need the whole dense Hessian at every recorded step are refused above this.
DENSE_MAX = 4000
# Lanczos: relative residual of the top Ritz pairs at which it stops; most steps before
# falling back to ARPACK; relative size of the seeded random part added to a warm start.
LANCZOS_TOL = 1e-10
LANCZOS_MAX = 300
WARM_NOISE = 1e-3
# Runs kept by the results cache.
CACHE_SIZE = 32

QUANTITIES = ("sharpness", "top_eigs", "trace", "eigvals", "density", "grad_overlap",
              "preconditioned_sharpness")
# name: {option: default}; grad_overlap's k=None means "the number of outputs C"
OPTIONS = {
    "sharpness": {}, "trace": {}, "eigvals": {}, "preconditioned_sharpness": {},
    "top_eigs": {"k": 5},
    "grad_overlap": {"k": None},
    "density": {"probes": 10, "steps": 30, "seed": 0, "sigma": None},
}
# methods whose step is set by a curvature matrix: they take no step size η
CURVATURE_METHODS = frozenset({"newton", "gauss_newton", "natural_gradient", "diagonal",
                               "hessian_free"})
DEFAULT_LR = 0.5


# thresholds ----------------------------------------------------------------------------------

def _defaults(method):
    """The method's own hyper-parameter defaults, read from its cl.optim factory."""
    sig = inspect.signature(optim.factory(method))
    return {k: p.default for k, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty}


def threshold(method, lr, **hyper):
    """The quadratic-model stability threshold of `method` at step size η = lr (module
    docstring): 2/η (gd), (2 + 2β)/η (momentum), (2 + 2β)/((1 + 2β)η) (nesterov),
    (2 + 2β₁)/((1 − β₁)η) (adam, for its preconditioned sharpness), None otherwise. β, β₁ are
    taken from `hyper`, else the method's defaults in cl.optim."""
    if method not in THRESHOLDS:
        return None
    h = {**_defaults(method), **hyper}
    return float(THRESHOLDS[method](float(lr), h))


THRESHOLDS = {
    "gd": lambda eta, h: 2.0 / eta,
    "momentum": lambda eta, h: (2.0 + 2.0 * h["beta"]) / eta,
    "nesterov": lambda eta, h: (2.0 + 2.0 * h["beta"]) / ((1.0 + 2.0 * h["beta"]) * eta),
    "adam": lambda eta, h: (2.0 + 2.0 * h["beta1"]) / ((1.0 - h["beta1"]) * eta),
}


# the run -------------------------------------------------------------------------------------

@dataclass
class Run:
    """What `train` recorded. M recorded steps: 0, every `every`-th, and the last completed.

    steps (M,) the recorded steps; ws (M, P) the weights there; losses (n_steps + 1,) the loss
    at every step (steps + 1 entries unless the run diverged); threshold: the method's
    quadratic-model threshold (None without one) and threshold_of the quantity it bounds
    ('sharpness', or 'preconditioned_sharpness' for adam). Per tracked quantity (None when not
    tracked): sharpness (M,), top_eigs (M, k) largest first, trace (M,), eigvals (M, P)
    ascending, grad_overlap (M,), preconditioned_sharpness (M,), density [(grid, φ)] with
    slq_nodes / slq_weights (M, probes, steps), kinds {name: (M,) top eigenvalue}.
    time_steps / time_tracking: seconds spent in optimiser steps (and the per-step loss) and in
    the tracked quantities; products: the Hessian-vector products Lanczos made (0 when dense)."""

    __repr__ = short_repr

    method: str
    lr: float
    hyper: dict
    every: int
    track: dict
    steps: np.ndarray
    ws: np.ndarray
    losses: np.ndarray
    threshold: float
    threshold_of: str
    status: str
    diverged: bool = False
    diverged_step: int = None
    diverged_sharpness: float = None
    sharpness: np.ndarray = None
    top_eigs: np.ndarray = None
    trace: np.ndarray = None
    eigvals: np.ndarray = None
    grad_overlap: np.ndarray = None
    preconditioned_sharpness: np.ndarray = None
    density: list = None
    slq_nodes: np.ndarray = None
    slq_weights: np.ndarray = None
    kinds: dict = field(default_factory=dict)
    time_steps: float = 0.0
    time_tracking: float = 0.0
    products: int = 0

    @property
    def n_steps(self):
        """The number of optimiser steps completed."""
        return len(self.losses) - 1

    def __getitem__(self, name):
        """A tracked quantity by name: 'sharpness', 'top_eigs', …, or a kind's name."""
        if name in self.kinds:
            return self.kinds[name]
        if name in QUANTITIES and name in self.track:
            return getattr(self, name)
        raise KeyError(f"{name!r} was not tracked in this run; tracked: {list(self.track)}")

    def index(self, step):
        """The index into the recorded arrays of the recorded step nearest to `step`."""
        return int(np.argmin(np.abs(self.steps - int(step))))


# options -------------------------------------------------------------------------------------

def _normalise_track(track, obj, P):
    """{name: options} from names, (name, options) pairs or a dict; unknown names and options
    refused by name."""
    if isinstance(track, str):
        track = (track,)
    items = track.items() if isinstance(track, dict) else [
        t if isinstance(t, tuple) else (t, {}) for t in (track or ())]
    out = {}
    for name, opts in items:
        opts = dict(opts or {})
        if not isinstance(name, str):
            raise TypeError(f"track takes quantity names (strings), got {name!r}")
        if name in OPTIONS:
            unknown = set(opts) - set(OPTIONS[name])
            if unknown:
                raise ValueError(f"track {name!r} takes no option {sorted(unknown)}; its "
                                 f"options: {sorted(OPTIONS[name]) or 'none'}")
            opts = {**OPTIONS[name], **opts}
        elif name in REGISTRY:
            pass
        else:
            raise ValueError(
                f"unknown tracked quantity {name!r}; choose from {list(QUANTITIES)} or a "
                f"registered curvature kind's name (its top eigenvalue): {sorted(REGISTRY)}")
        out[name] = opts
    for name in ("top_eigs", "grad_overlap"):
        if name in out:
            k = out[name]["k"]
            if k is None:
                k = obj.n_outputs if isinstance(obj, Problem) else 1
            if not isinstance(k, (int, np.integer)) or not 1 <= k <= P:
                raise ValueError(f"track {name!r}: k must be an integer in 1..{P}, got {k!r}")
            out[name]["k"] = int(k)
    if "density" in out:
        d = out["density"]
        for opt in ("probes", "steps"):
            if not isinstance(d[opt], (int, np.integer)) or d[opt] < 1:
                raise ValueError(f"track 'density': {opt} must be an integer >= 1, got "
                                 f"{d[opt]!r}")
        if d["sigma"] is not None and not d["sigma"] > 0:
            raise ValueError(f"track 'density': sigma must be > 0, got {d['sigma']!r}")
    return out


def _check_method(method, lr, hyper):
    """(factory kwargs, η or None): lr is the step size of the first-order methods; the
    curvature methods take none."""
    names = optim.method_names()
    if method not in names:
        raise ValueError(f"unknown method {method!r}; choose one of {names}")
    params = inspect.signature(optim.factory(method)).parameters
    has_lr = ("lr" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()))
    curvature = method in CURVATURE_METHODS or method not in optim.METHODS
    if curvature or not has_lr:
        if lr is not None:
            raise ValueError(
                f"method {method!r} has no step size η: its step is set by its curvature "
                f"matrix, and it has no stability threshold; leave lr out (its own settings, "
                f"e.g. damping=, go in **hyper), or pick a step-size method: "
                f"{sorted(THRESHOLDS)}")
        return dict(hyper), None
    eta = DEFAULT_LR if lr is None else lr
    if not (isinstance(eta, (int, float, np.floating, np.integer)) and np.isfinite(eta)
            and eta > 0):
        raise ValueError(f"lr (the step size η) must be a finite number > 0, got {lr!r}")
    return {**hyper, "lr": float(eta)}, float(eta)


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}"
                         + (" (record every `every`-th step; every=1 records them all)"
                            if name == "every" else ""))
    return int(value)


def _needs_dense(track, obj, P, dense_limit):
    """Names of the tracked quantities that need the whole dense Hessian (or a kind's dense
    matrix) at every recorded step, for this problem and size."""
    need = []
    if "eigvals" in track:
        need.append("eigvals")
    layered = isinstance(obj, Problem) and obj.layered
    if "trace" in track and P > dense_limit and not layered:
        need.append("trace")
    for name in track:
        if name in REGISTRY and name != "hessian":
            entry = REGISTRY[name]
            if entry.structure == "dense" and P > dense_limit and not _lanczos_kind(entry):
                need.append(name)
    return need


def _lanczos_kind(entry):
    return entry.matrix_free and not entry.sampled


# eigensolvers --------------------------------------------------------------------------------

class _Lanczos:
    """Top-k eigenpairs of a sequence of symmetric operators, each started from the previous
    call's top eigenvectors (warm) or from a seeded random vector (cold).

    Plain Lanczos with full reorthogonalisation and no restarts (so every product made stays
    in the Krylov space), stopped as soon as the top-k Ritz pairs (θᵢ, uᵢ) have residuals
    ‖Huᵢ − θᵢuᵢ‖ = βⱼ|sⱼᵢ| ≤ LANCZOS_TOL·|θ₁| (then θᵢ is within that of an eigenvalue of H,
    and within its square over the gap, in practice at rounding level). A warm start is
    v₀ = Σ previous uᵢ + a seeded random part of relative size WARM_NOISE, which keeps every
    direction in the Krylov space, so a new top eigenvector is not missed. Without
    convergence in min(P, LANCZOS_MAX) steps, ARPACK (`eigsh`, tol=0) from a random start."""

    def __init__(self, rng, warm=True):
        self.rng, self.warm, self.prev = rng, warm, None
        self.products = self.calls = 0

    def top(self, op, k):
        P = op.shape[0]
        if k >= P - 1:                                  # too few to iterate: dense
            M = op.matmat(np.eye(P))
            self.products += P
            lam, U = np.linalg.eigh(0.5 * (M + M.T))
            vals, vecs = lam[::-1][:k], U[:, ::-1][:, :k]
        else:
            r = self.rng.standard_normal(P)
            if self.warm and self.prev is not None:
                v0 = self.prev.sum(1)
                v0 = v0 / np.linalg.norm(v0) + WARM_NOISE * r / np.linalg.norm(r)
            else:
                v0 = r
            out = self._lanczos(op, k, v0, min(P, LANCZOS_MAX))
            vals, vecs = out if out is not None else self._arpack(op, k)
        self.prev = vecs
        self.calls += 1
        return vals, vecs

    def _lanczos(self, op, k, v0, m):
        P = op.shape[0]
        Q = np.empty((m, P))
        T = np.zeros((m, m))                            # the tridiagonal, filled as it grows
        q = v0 / np.linalg.norm(v0)
        for j in range(m):
            Q[j] = q
            u = op.matvec(q)
            self.products += 1
            T[j, j] = q @ u
            u = u - Q[: j + 1].T @ (Q[: j + 1] @ u)     # full reorthogonalisation, twice
            u = u - Q[: j + 1].T @ (Q[: j + 1] @ u)
            b = np.linalg.norm(u)
            if j + 1 < k and b <= 1e-14 * abs(T[j, j]):
                return None                             # exhausted before k Ritz pairs
            if j + 1 >= k:
                theta, S = np.linalg.eigh(T[: j + 1, : j + 1])
                theta, S = theta[::-1][:k], S[:, ::-1][:, :k]
                res = b * np.abs(S[-1])                 # ‖H uᵢ − θᵢ uᵢ‖ = β_j |s_ji|
                scale = max(abs(theta[0]), 1e-300)
                if np.all(res <= LANCZOS_TOL * scale) or b <= 1e-14 * scale:
                    return theta, Q[: j + 1].T @ S
            if j + 1 < m:
                T[j, j + 1] = T[j + 1, j] = b
            q = u / b
        return None

    def _arpack(self, op, k):
        P = op.shape[0]
        ncv = min(P, max(4 * k, 40))
        try:
            vals, vecs = eigsh(op, k=k, which="LA", v0=self.rng.standard_normal(P), ncv=ncv,
                               tol=0, maxiter=100 * P)
        except ArpackNoConvergence as e:
            raise ArpackNoConvergence(
                f"Lanczos did not find the top {k} Hessian eigenvalues (found "
                f"{len(e.eigenvalues)}): the top of the spectrum is clustered. Track fewer "
                "(a smaller k), or use solver='dense' on this problem",
                e.eigenvalues, e.eigenvectors) from None
        order = np.argsort(vals)[::-1]
        return vals[order], vecs[:, order]


def _scaled(op, d):
    """The operator v -> D op (D v), D = diag(d)."""
    return LinearOperator(op.shape, matvec=lambda v: d * op.matvec(d * v),
                          matmat=lambda V: d[:, None] * op.matmat(d[:, None] * V),
                          rmatvec=lambda v: d * op.matvec(d * v), dtype=np.float64)


# recording -----------------------------------------------------------------------------------

class _Recorder:
    """Computes the tracked quantities at the recorded steps (dense or warm-started Lanczos)."""

    def __init__(self, obj, P, track, method, hyper, solver, warm_start, dense_limit, seed=0):
        self.obj, self.track, self.method, self.hyper = obj, track, method, hyper
        self.P = P
        self.dense = solver == "dense" or (solver == "auto" and self.P <= dense_limit)
        self.rng = np.random.default_rng(seed)
        self.lanczos = {}
        self.warm = warm_start
        self.rows = {name: [] for name in track}
        self.last_sharpness = None

    def _solver(self, key):
        if key not in self.lanczos:
            self.lanczos[key] = _Lanczos(self.rng, self.warm)
        return self.lanczos[key]

    def hessian_top(self, w, k, vectors=True):
        """(λ₁ … λ_k, their eigenvectors (P, k) or None, the dense H or None, all eigenvalues
        ascending or None)."""
        if self.dense:
            H = hessian(self.obj, w, progress=False)
            if not vectors:
                lam = np.linalg.eigvalsh(H)
                return lam[::-1][:k], None, H, lam
            lam, U = np.linalg.eigh(H)
            return lam[::-1][:k], U[:, ::-1][:, :k], H, lam
        vals, vecs = self._solver("hessian").top(operator(self.obj, w, "hessian"), k)
        return vals, vecs, None, None

    def record(self, w, state):
        track, out = self.track, {}
        k = max([1] + [track[n]["k"] for n in ("top_eigs", "grad_overlap") if n in track])
        needs_h = any(n in track for n in ("sharpness", "top_eigs", "grad_overlap", "hessian"))
        needs_h = needs_h or self.dense and any(              # dense: one H serves them all
            n in track for n in ("eigvals", "trace", "density", "preconditioned_sharpness"))
        H = lam = None
        if needs_h:
            vals, vecs, H, lam = self.hessian_top(w, k, vectors="grad_overlap" in track)
            self.last_sharpness = float(vals[0])
        else:
            self.last_sharpness = None
        if "sharpness" in track:
            out["sharpness"] = float(vals[0])
        if "hessian" in track:
            out["hessian"] = float(vals[0])
        if "top_eigs" in track:
            out["top_eigs"] = vals[: track["top_eigs"]["k"]].copy()
        if "grad_overlap" in track:
            g = np.asarray(self.obj.grad(w), dtype=np.float64)
            c = vecs[:, : track["grad_overlap"]["k"]].T @ g
            gg = float(g @ g)
            out["grad_overlap"] = float(c @ c / gg) if gg > 0 else np.nan
        if "eigvals" in track or ("trace" in track and not self._diag_trace()):
            if H is None:
                H = self._dense_hessian(w)
            if lam is None:
                lam = np.linalg.eigvalsh(H)
        if "eigvals" in track:
            out["eigvals"] = lam.copy()
        if "trace" in track:
            out["trace"] = (float(matrix(self.obj, w, "diag_hessian").diag.sum())
                            if self._diag_trace() else float(np.trace(H)))
        if "density" in track:
            d = track["density"]
            op = H if H is not None else operator(self.obj, w, "hessian")
            nodes, weights = slq(op, d["probes"], d["steps"], d["seed"])
            out["density"] = (nodes, weights)
        if "preconditioned_sharpness" in track:
            out["preconditioned_sharpness"] = self._preconditioned(w, state, H)
        for name, opts in track.items():
            if name in REGISTRY and name != "hessian":
                out[name] = self._kind_top(w, name, opts)
        for name, val in out.items():
            self.rows[name].append(val)

    def _diag_trace(self):
        return not self.dense and isinstance(self.obj, Problem) and self.obj.layered

    def _dense_hessian(self, w):
        check_dense("hessian", self.P)
        return hessian(self.obj, w, progress=False)

    def _preconditioned(self, w, state, H):
        """λ_max(P^-½ H P^-½), P = (1 − β₁^{t+1}) diag(√v̂ₜ₊₁ + ε); state = (t, (m, v))."""
        if state is None or state[1] is None:
            return np.nan
        t, (_, v) = state
        h = {**_defaults("adam"), **self.hyper}
        b1, b2, eps = h["beta1"], h["beta2"], h["eps"]
        vhat = v / (1 - b2 ** (t + 1))
        p = (1 - b1 ** (t + 1)) * (np.sqrt(vhat) + eps)
        d = 1.0 / np.sqrt(p)
        if H is not None:
            return float(np.linalg.eigvalsh(d[:, None] * H * d[None, :])[-1])
        vals, _ = self._solver("preconditioned").top(
            _scaled(operator(self.obj, w, "hessian"), d), 1)
        return float(vals[0])

    def _kind_top(self, w, name, opts):
        entry = get(name)
        try:
            if entry.structure == "dense" and not self.dense and _lanczos_kind(entry):
                vals, _ = self._solver(name).top(operator(self.obj, w, name), 1)
                return float(vals[0])
            return float(matrix(self.obj, w, name, **opts).eigvalsh()[-1])
        except (TypeError, ValueError, NotImplementedError) as e:
            raise ValueError(f"cannot track the top eigenvalue of kind {name!r} on this "
                             f"problem: {e}") from None

    def sharpness(self, w):
        """λ₁ at the w just recorded (for the divergence report), reusing the record's."""
        if self.last_sharpness is not None:
            return self.last_sharpness
        return float(self.hessian_top(w, 1, vectors=False)[0][0])


# the cache -----------------------------------------------------------------------------------

_CACHE = OrderedDict()
_STATS = {"hits": 0, "misses": 0}


def cache_clear():
    """Empty the results cache."""
    _CACHE.clear()
    _STATS.update(hits=0, misses=0)


def cache_info():
    """{'hits', 'misses', 'size', 'maxsize'} of the results cache."""
    return dict(_STATS, size=len(_CACHE), maxsize=CACHE_SIZE)


def _freeze(x):
    """A hashable stand-in for a setting (arrays by their bytes)."""
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, np.ndarray):
        return ("array", x.shape, x.dtype.str, hashlib.sha1(x.tobytes()).hexdigest())
    hash(x)
    return x


def _readonly(run):
    for name, val in vars(run).items():
        if isinstance(val, np.ndarray):
            val.setflags(write=False)
    for grid, dens in run.density or ():
        grid.setflags(write=False)
        dens.setflags(write=False)
    for val in run.kinds.values():
        val.setflags(write=False)
    return run


# train ---------------------------------------------------------------------------------------

def train(problem, w0, method="gd", lr=None, steps=2000, every=10, track=("sharpness",), *,
          solver="auto", warm_start=True, blowup=1e8, progress=None, cache=True, **hyper):
    """Run `method` (any of `cl.optim.method_names()`) full-batch for `steps` steps from w0 and
    record curvature along the way (module docstring: quantities, solvers, thresholds, cache).

    problem: a Problem, an Objective or an autograd-differentiable function of a flat vector.
    lr: the step size η of the step-size methods (gd, momentum, nesterov, adam, …), default
    0.5; a method whose step is set by a curvature matrix (newton, gauss_newton, kfac,
    hessian_free, …) takes none and refuses one. every: record at step 0, every `every`-th
    step and the last (every > steps records the first and the last). track: quantity names
    or {name: options}. solver: 'auto' (dense eigh for P ≤ DENSE_LIMIT, else warm-started
    Lanczos), 'dense' or 'lanczos'. warm_start: start each Lanczos call from the previous top
    eigenvector(s) (False: from a seeded random vector, the cold baseline). blowup: the loss
    factor that counts as divergence. progress: a tqdm bar (None: shown when the run takes
    over 2 s; True: always; False: never), or a callable progress(done, steps) called after
    each step with the number of steps done (1 … steps; not called for a cached run). cache:
    reuse an identical earlier run. hyper: the method's own settings (beta, beta1, damping, …),
    as `cl.optim.minimize` takes them.

    Returns a `Run`. Bad settings raise before any step; divergence does not raise (see
    `Run.diverged`).
    """
    obj = as_objective(problem)
    w = obj.check(w0).copy()
    P = w.shape[0]
    kwargs, eta = _check_method(method, lr, hyper)
    steps = _check_count("steps", steps, 0)
    every = _check_count("every", every, 1)
    if solver not in ("auto", "dense", "lanczos"):
        raise ValueError(f"unknown solver {solver!r}; choose 'auto', 'dense' or 'lanczos'")
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress takes None, True, False or a function progress(done, steps), "
                        f"not {progress!r:.60}")
    blowup = float(blowup)
    if not blowup > 0:
        raise ValueError(f"blowup must be > 0, got {blowup}")
    track = _normalise_track(track, obj, P)
    if "preconditioned_sharpness" in track and method != "adam":
        raise ValueError(
            f"'preconditioned_sharpness' is Adam's (λ_max of its preconditioned Hessian, Cohen "
            f"et al. 2022); method {method!r} has no diagonal preconditioner: track "
            "'sharpness' instead, or use method='adam'")
    dense = solver == "dense" or (solver == "auto" and P <= DENSE_LIMIT)
    need = _needs_dense(track, obj, P, P if dense else DENSE_LIMIT)
    if dense and any(n in track for n in ("sharpness", "top_eigs", "grad_overlap", "hessian",
                                          "preconditioned_sharpness", "density")):
        need.append("sharpness (solver='dense')")
    if need and P > DENSE_MAX:
        fix = ("use solver='auto' (Lanczos above DENSE_LIMIT)" if solver == "dense" else
               "track 'top_eigs' (the outliers) and 'density' (the bulk, by SLQ) instead, "
               "which are matrix-free")
        raise DenseTooLargeError(
            f"tracking {need} needs a dense {P} x {P} Hessian at every recorded step, over "
            f"DENSE_MAX = {DENSE_MAX} parameters: {fix}; or raise cl.dynamics.DENSE_MAX if "
            "you can wait")
    if need:
        check_dense("hessian", P, alternative="tracking 'top_eigs' and 'density' (matrix-free)")
    key = None
    if cache:
        try:
            key = (id(problem), _freeze(w), method, eta, steps, every, _freeze(track),
                   _freeze(hyper), solver, bool(warm_start), blowup, DENSE_LIMIT)
        except TypeError:
            key = None                                # an unhashable setting: no caching
        hit = _CACHE.get(key) if key is not None else None
        if hit is not None and hit[0]() is problem:
            _CACHE.move_to_end(key)
            _STATS["hits"] += 1
            return hit[1]

    for name in track:
        if name in REGISTRY and name != "hessian":
            _probe_kind(obj, w, name, track[name], P)
    try:
        init, update = optim.factory(method)(**kwargs)
    except TypeError as e:
        raise TypeError(f"bad settings for method {method!r}: {e}") from None
    # small problems: one BLAS thread (module docstring)
    with threadpool_limits(1) if P <= DENSE_LIMIT else nullcontext():
        run = _train(obj, w, method, eta, kwargs, hyper, init, update, steps, every, track,
                     solver, warm_start, blowup, progress)
    if key is not None:
        _STATS["misses"] += 1
        try:
            ref = weakref.ref(problem)
        except TypeError:
            return run                                # not weakly referable: not cached
        _CACHE[key] = (ref, _readonly(run))
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return run


def _probe_kind(obj, w, name, opts, P):
    """Refuse, before training, a kind the problem cannot build, naming the kind and why."""
    entry = get(name)
    try:
        if entry.needs_problem and not isinstance(obj, Problem):
            raise TypeError("it needs a Problem (model, loss and data), not a generic "
                            "objective")
        if entry.structure == "dense" and P > DENSE_LIMIT and _lanczos_kind(entry):
            operator(obj, w, name).matvec(np.ones(P))
        else:
            matrix(obj, w, name, **opts)
    except (TypeError, ValueError, NotImplementedError) as e:
        raise ValueError(f"cannot track kind {name!r} on this problem: {e}") from None


def _train(obj, w, method, eta, kwargs, hyper, init, update, steps, every, track, solver,
           warm_start, blowup, progress):
    recorder = _Recorder(obj, w.shape[0], track, method, hyper, solver, warm_start,
                         DENSE_LIMIT)
    record_at = set(range(0, steps + 1, every)) | {steps}
    L0 = float(obj.loss(w))
    if not np.isfinite(L0):
        raise ValueError(f"the loss at w0 is {L0}; start from a point where it is finite")
    losses, ws, rec_steps = [L0], [], []
    state = init(w)
    t_steps = t_track = 0.0
    status, diverged, div_step, div_sharp = f"completed {steps} steps", False, None, None
    pre = "preconditioned_sharpness" in track
    report = progress if callable(progress) else None
    show = report is None and ((progress is None) or bool(progress))
    bar = tqdm(total=steps, desc=f"{method}" + (f" η={eta:g}" if eta else ""),
               disable=not show, delay=2 if progress is None else 0, leave=False)

    def record(t, w, state_next):
        nonlocal t_track
        t0 = time.perf_counter()
        recorder.record(w, (t, state_next) if pre else None)
        t_track += time.perf_counter() - t0
        ws.append(w.copy())
        rec_steps.append(t)

    try:
        for t in range(steps + 1):
            if t == steps:                             # the last step: no update to take
                if t in record_at:
                    nxt = update(t, w, state, obj)[1] if pre else None
                    record(t, w, nxt)
                break
            t0 = time.perf_counter()
            try:
                w_new, state_new, _ = update(t, w, state, obj)
            except np.linalg.LinAlgError as e:
                t_steps += time.perf_counter() - t0
                status = f"stopped at step {t}: {e}"
                record(t, w, None)
                break
            finite = bool(np.all(np.isfinite(w_new)))
            with np.errstate(all="ignore"):
                L = float(obj.loss(w_new)) if finite else np.nan
            t_steps += time.perf_counter() - t0
            bad = not np.isfinite(L) or L > blowup * (abs(L0) + 1)
            if t in record_at or bad:
                record(t, w, state_new)
            if bad:
                diverged, div_step = True, t + 1
                div_sharp = recorder.sharpness(ws[-1])
                thr = threshold(method, eta, **hyper) if eta else None
                than = (f"; the threshold of {method} is {thr:.4g}" if thr else "")
                status = (f"diverged at step {t + 1}: loss {L:.3g}; the sharpness at step {t} "
                          f"was {div_sharp:.4g}{than}. Try a smaller lr")
                break
            losses.append(L)
            w, state = w_new, state_new
            bar.update(1)
            if report is not None:
                report(t + 1, steps)
    finally:
        bar.close()

    rows = recorder.rows
    arr = lambda name: np.array(rows[name]) if name in rows else None
    kinds = {n: np.array(rows[n]) for n in track if n in REGISTRY and n != "hessian"}
    if "hessian" in track:
        kinds["hessian"] = np.array(rows["hessian"])
    density = nodes = weights = None
    if "density" in track:
        nodes = np.array([nw[0] for nw in rows["density"]])
        weights = np.array([nw[1] for nw in rows["density"]])
        sigma = track["density"]["sigma"]
        density = [slq_smooth(n, wt, sigma=sigma) for n, wt in zip(nodes, weights)]
    thr = threshold(method, eta, **hyper) if eta else None
    return Run(
        method=method, lr=eta, hyper=dict(hyper), every=every, track=track,
        steps=np.array(rec_steps), ws=np.array(ws), losses=np.array(losses),
        threshold=thr,
        threshold_of=None if thr is None else
        ("preconditioned_sharpness" if method == "adam" else "sharpness"),
        status=status, diverged=diverged, diverged_step=div_step,
        diverged_sharpness=div_sharp,
        sharpness=arr("sharpness"), top_eigs=arr("top_eigs"), trace=arr("trace"),
        eigvals=arr("eigvals"), grad_overlap=arr("grad_overlap"),
        preconditioned_sharpness=arr("preconditioned_sharpness"),
        density=density, slq_nodes=nodes, slq_weights=weights, kinds=kinds,
        time_steps=t_steps, time_tracking=t_track,
        products=sum(lz.products for lz in recorder.lanczos.values()),
    )
