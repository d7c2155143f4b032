"""Influence functions (Koh & Liang 2017) over any registered curvature kind, and the truth they
approximate: leave-one-out retraining.

The problem's objective is L(w) = (1/N) Σⱼ ℓⱼ(w) + (λ/2)‖w‖². Removing training point i and
keeping the *same* objective on the N − 1 others (mean loss + the same L2) gives
(N − 1) L₋ᵢ = N L − (ℓᵢ + (λ/2)‖w‖²): the point takes its share of both terms with it. At a
minimum w of L (∇L = 0), one Newton step on L − (ℓᵢ + (λ/2)‖w‖²)/N moves w by
Δwᵢ ≈ (1/N) C⁻¹ (∇ℓᵢ + λw) with C = ∇²L, so the change of a test loss ℓ_test (data term only,
no L2) is predicted as

    influence[i, t] = (1/N) ∇ℓ_t(w)ᵀ C⁻¹ (∇ℓᵢ(w) + λw)                      (N_train, M_test)

with C the kind's matrix of the objective (λI included, as every curvature object here includes
it) plus `damping`·I. With λ = 0 this is −I_up,loss(zᵢ, z_t)/N in Koh & Liang's notation (their
upweighting by ε = −1/N). Positive: removing point i raises test loss t (the point helped).
Without the λw term the prediction is wrong whenever λ > 0: on ridge regression with λ = 0.5 the
term is as large as the data gradient (tests/test_influence.py measures both).

`leave_one_out` retrains: for each removed point, Newton's method from w (Cholesky of the exact
Hessian, a backtracking line search, the eigenvalues' absolute values where the Hessian is
indefinite) until ‖∇L₋ᵢ‖ ≤ tol, and reports ℓ_t(w₋ᵢ) − ℓ_t(w). `influence_table` compares kinds
with it: per kind the mean over test points of the Spearman rank correlation across training
points (does the kind get the *order* right?), the Pearson correlation over all pairs, and the
scale ‖predicted‖ / ‖true‖ (does it get the *size* right?).
"""

import time
from collections import namedtuple

import numpy as np
import scipy.linalg
from tqdm.auto import tqdm

from ._checks import check_dense, nonnegative
from .curvature.hessian import hessian
from .curvature.kinds import matrix
from .curvature.persample import per_sample_grads
from .problem import Problem, require_problem

__all__ = ["InfluenceTable", "influence", "influence_table", "leave_one_out"]

# leave-one-out retrains with dense Newton steps: refuse beyond this many parameters, and beyond
# this many floating-point operations in all (about a quarter of an hour on two cores)
MAX_PARAMS = 2000
MAX_FLOPS = 1e13


def _test_problem(problem, X_test, y_test):
    """The test points as a problem of the same model and loss, without L2 (test losses are the
    data term only)."""
    try:
        return Problem(problem.model, problem.lossfn, X_test, y_test, l2=0.0)
    except (TypeError, ValueError) as e:
        raise type(e)(f"X_test, y_test: {e}") from None


def _layered(problem, what):
    problem = require_problem(problem, what)
    problem.require_layered(what)
    return problem


def influence(problem, w, X_test, y_test, kind="hessian", damping=0.0, **options):
    """The predicted change of each test loss when each training point is removed,
    (1/N) ∇ℓ_testᵀ (C + damping·I)⁻¹ (∇ℓᵢ + λw), shape (N_train, M_test) (module docstring).

    kind: a registered curvature kind (C includes the problem's L2 λ), or your own matrix as
    `cl.matrix` accepts; options: the kind's own (samples, seed, flavor, ...). Kronecker kinds
    solve with their factors (no P × P matrix). Cost: one curvature build, M_test solves, one
    backward pass for the N per-sample gradients (memory N·P)."""
    problem = _layered(problem, "influence")
    w = problem.check(w)
    damping = nonnegative("damping", damping)
    test = _test_problem(problem, X_test, y_test)
    C = matrix(problem, w, kind, **options)
    solved = C.solve(per_sample_grads(test, w).T, damping)            # C⁻¹ ∇ℓ_t, (P, M)
    G = per_sample_grads(problem, w)                                    # (N, P)
    return (G @ solved + problem.l2 * (w @ solved)[None, :]) / problem.N


def _test_losses(test, w):
    return np.asarray(test.lossfn.value(test.outputs(w), test.y), dtype=np.float64)


def _newton_step(sub, w, g):
    """Newton direction −H⁻¹g (|H| where H is indefinite: the absolute values of its
    eigenvalues, so the step still descends)."""
    H = hessian(sub, w)
    try:
        return -scipy.linalg.cho_solve(scipy.linalg.cho_factor(H, check_finite=False), g)
    except np.linalg.LinAlgError:
        lam, U = np.linalg.eigh(H)
        lam = np.maximum(np.abs(lam), 1e-12 * max(np.abs(lam).max(), 1e-300))
        return -U @ ((U.T @ g) / lam)


def _retrain(sub, w, tol, max_steps):
    """Newton's method with backtracking from w until ‖∇L‖ ≤ tol: (w*, steps)."""
    g = sub.grad(w)
    for k in range(max_steps):
        gnorm = np.linalg.norm(g)
        if gnorm <= tol:
            return w, k
        d = _newton_step(sub, w, g)
        f0, slope, t = float(sub.loss(w)), float(g @ d), 1.0
        while True:
            w_new = w + t * d
            g_new = sub.grad(w_new)
            f_new = float(sub.loss(w_new))
            # Armijo, or (at rounding level, where losses stop telling) a smaller gradient
            if f_new <= f0 + 1e-4 * t * slope or np.linalg.norm(g_new) < gnorm:
                break
            t *= 0.5
            if t < 1e-12:
                raise RuntimeError(f"leave-one-out: Newton's line search stalled at "
                                   f"‖∇L‖ = {gnorm:.3g}; the retrained problem may have no "
                                   "minimum near w (try a larger l2)")
        w, g = w_new, g_new
    raise RuntimeError(f"leave-one-out: Newton did not reach ‖∇L‖ ≤ {tol:g} in {max_steps} steps "
                       f"(‖∇L‖ = {np.linalg.norm(g):.3g}); pass a larger tol or max_steps")


def leave_one_out(problem, w, X_test, y_test, points=None, tol=1e-8, max_steps=50,
                  progress=None):
    """The actual change of each test loss when each training point is removed,
    ℓ_t(w₋ᵢ) − ℓ_t(w), shape (len(points), M_test): retrained on the other N − 1 points with the
    same objective (mean loss + the problem's L2) by Newton's method from w to ‖∇L₋ᵢ‖ ≤ tol.

    w must be a minimum of the problem's objective (‖∇L(w)‖ ≤ tol), or the differences would
    mix the retraining with the unfinished training. points: indices of the training points
    to remove (default all N). Refused when the problem is too large to retrain with dense
    Newton steps (P > MAX_PARAMS, or more than MAX_FLOPS in all); progress: a bar (default
    when there is more than one point to retrain)."""
    problem = require_problem(problem, "leave_one_out")
    w = problem.check(w)
    tol = nonnegative("tol", tol)
    N, P = problem.N, problem.n_params
    idx = np.arange(N) if points is None else np.atleast_1d(np.asarray(points))
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise ValueError(f"points must be a non-empty list of training-point indices, got "
                         f"{points!r}")
    if idx.min() < -N or idx.max() >= N or len(set(idx % N)) != len(idx):
        raise ValueError(f"points must be distinct indices in 0..{N - 1}, got {points!r}")
    if N < 2:
        raise ValueError("leave-one-out needs at least 2 training points")
    flops = len(idx) * 4 * (N * P * P / 2 + P ** 3 / 3)
    if P > MAX_PARAMS or flops > MAX_FLOPS:
        raise ValueError(
            f"leave-one-out retrains {len(idx)} times with dense Newton steps on P = {P} "
            f"parameters and N = {N} points (about {flops / 1e9:.3g} GFLOP; the limits are "
            f"P ≤ {MAX_PARAMS} and {MAX_FLOPS / 1e9:.0f} GFLOP): too large to retrain. Pass "
            "points= (a few training points) on a small problem, or use cl.influence alone")
    check_dense("leave-one-out Hessian", P)
    test = _test_problem(problem, X_test, y_test)
    gnorm = float(np.linalg.norm(problem.grad(w)))
    if gnorm > tol:
        raise ValueError(
            f"w is not a minimum of the problem's objective: ‖∇L(w)‖ = {gnorm:.3g} > tol = "
            f"{tol:g}, so retraining would also finish the training. Converge first, e.g. "
            "w = cl.optim.minimize(problem, w, 'newton', steps=20).ws[-1], or pass a larger tol")
    base = _test_losses(test, w)
    show = progress if progress is not None else len(idx) > 1
    out = np.empty((len(idx), test.N))
    for r, i in enumerate(tqdm(idx % N, desc="leave-one-out", disable=not show, leave=False)):
        sub = problem.subset(np.delete(np.arange(N), i))
        w_i, _ = _retrain(sub, w.copy(), tol, max_steps)
        out[r] = _test_losses(test, w_i) - base
    return out


Row = namedtuple("Row", "kind spearman pearson scale seconds")


class InfluenceTable(list):
    """Rows (kind, spearman, pearson, scale, seconds) of `influence_table`; prints as a table.
    `.truth` is the leave-one-out matrix the rows were measured against, `.points` its rows'
    training indices, `.scores[kind]` each kind's predictions on those points."""

    columns = Row._fields

    def __str__(self):
        head = ("kind", "rank corr.", "pearson", "scale", "seconds")
        rows = [(r.kind, f"{r.spearman:.3f}", f"{r.pearson:.3f}", f"{r.scale:.3g}",
                 f"{r.seconds:.2f}") for r in self]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        line = lambda cells: "  ".join(f"{c!s:<{w}}" for c, w in zip(cells, widths)).rstrip()
        return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])

    __repr__ = __str__

    def _repr_html_(self):
        import html

        cells = lambda r, tag: "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in r)
        body = "".join("<tr>" + cells((r.kind, f"{r.spearman:.3f}", f"{r.pearson:.3f}",
                                       f"{r.scale:.3g}", f"{r.seconds:.2f}"), "td") + "</tr>"
                       for r in self)
        return ("<table><tr>" + cells(("kind", "rank corr.", "pearson", "scale", "seconds"), "th")
                + "</tr>" + body + "</table>")


DEFAULT_KINDS = ("hessian", "ggn", "kflr", "kfra", "ekfac", "diagonal")


def _mean_spearman(pred, truth):
    from scipy.stats import spearmanr  # here: scipy.stats costs ~2 s and ~25 MB at import
    rhos = []
    for t in range(truth.shape[1]):
        if np.ptp(truth[:, t]) == 0 or np.ptp(pred[:, t]) == 0:
            continue
        rhos.append(spearmanr(pred[:, t], truth[:, t]).statistic)
    return float(np.mean(rhos)) if rhos else float("nan")


def influence_table(problem, w, X_test, y_test, kinds=DEFAULT_KINDS, points=None, truth=None,
                    damping=0.0, progress=None):
    """Each kind's influence scores against leave-one-out (module docstring): an
    `InfluenceTable` with, per kind, the mean Spearman rank correlation across the removed
    training points (per test point), the Pearson correlation over all (point, test) pairs,
    the scale ‖predicted‖/‖true‖ and the seconds the scores took. truth: a leave-one-out
    matrix for `points` computed before (else it is computed here)."""
    problem = _layered(problem, "influence_table")
    idx = np.arange(problem.N) if points is None else np.atleast_1d(np.asarray(points))
    if truth is None:
        truth = leave_one_out(problem, w, X_test, y_test, points=idx, progress=progress)
    truth = np.asarray(truth, dtype=np.float64)
    if truth.shape[0] != len(idx):
        raise ValueError(f"truth has {truth.shape[0]} rows but points has {len(idx)}: pass the "
                         "points the leave-one-out matrix was computed for")
    from scipy.stats import pearsonr  # here: scipy.stats costs ~2 s and ~25 MB at import
    table = InfluenceTable()
    table.truth, table.points, table.scores = truth, idx, {}
    for kind in kinds:
        t0 = time.perf_counter()
        pred = influence(problem, w, X_test, y_test, kind=kind, damping=damping)[idx]
        seconds = time.perf_counter() - t0
        table.scores[kind] = pred
        flat_p, flat_t = pred.ravel(), truth.ravel()
        pear = (float(pearsonr(flat_p, flat_t).statistic)
                if np.ptp(flat_p) > 0 and np.ptp(flat_t) > 0 else float("nan"))
        scale = float(np.linalg.norm(pred) / max(np.linalg.norm(truth), 1e-300))
        table.append(Row(kind, _mean_spearman(pred, truth), pear, scale, seconds))
    return table
