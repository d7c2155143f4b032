"""Benchmark (not a test): randomized trace and diagonal estimators on a network's GGN.

    .venv/bin/python bench/estimators.py     # writes bench/results_estimators.md; a few minutes

MLP 20-64-64-10 (tanh, P = 6,154), 256 samples, cross-entropy, float64, at the initial
weights. The estimators of `curvlab.estimators` run on the matrix-free GGN operator
`cl.operator(problem, w, "ggn")`; the exact trace and diagonal come from the dense
`cl.ggn(problem, w)`. For each estimator the number of matrix-vector products is searched
over the grid 6, 12, 18, 24, 36, 48, …, 4608, 6144 (each value 4/3 or 3/2 of the one before,
all divisible by 2 and 3 and below P), and the first value at which the median relative error
over 10 seeds is at most 1 % is reported — |t̂ − t| / |t| for the trace, ‖d̂ − d‖₂ / ‖d‖₂ for
the diagonal — with the median time of one call there. Hutchinson's error falls as
1/√matvecs, so its search stops as soon as even the largest grid value would, by that law,
stay above twice the target, and the table gives the law's extrapolation instead; its
variance is known in closed form, so the table also gives the count the theory predicts.
Hutch++ and XTrace are searched on to 0.1 % as well, where the low-rank sketch pays off. BLAS
runs on one thread, so that the times do not depend on whether the machine's other cores are
busy.
"""

import pathlib
import platform
import time

import numpy as np
from threadpoolctl import threadpool_limits

import curvlab as cl
from curvlab import estimators as est

ROOT = pathlib.Path(__file__).resolve().parents[1]
GRID = sorted({6 * 2 ** j for j in range(11)} | {9 * 2 ** j for j in range(1, 10)})
# 6, 12, 18, 24, 36, 48, 72, …, 4608, 6144: steps of 4/3 and 3/2, all divisible by 6
SEEDS = range(10)
MEDIAN_ABS_NORMAL = 0.6745         # median of |N(0, 1)|


def rel_error(value, exact):
    return float(np.linalg.norm(np.asarray(value) - exact) / np.linalg.norm(exact))


def search(fn, op, exact, targets, monte_carlo):
    """Median error and call time at each grid value, up to the first value that meets every
    target. Returns {curve: {g: (median error, seconds)}, found: {target: g},
    extrapolated: {target: products by the 1/√m law}, search: seconds}."""
    curve, found, extrapolated, t_start = {}, {}, {}, time.perf_counter()
    for g in GRID:
        errors, times = [], []
        for s in SEEDS:
            t0 = time.perf_counter()
            out = fn(op, g, seed=s)
            times.append(time.perf_counter() - t0)
            errors.append(rel_error(out.value, exact))
        med = float(np.median(errors))
        curve[g] = (med, float(np.median(times)))
        found.update({t: g for t in targets if t not in found and med <= t})
        left = [t for t in targets if t not in found]
        if not left:
            break
        if monte_carlo and med * np.sqrt(g / GRID[-1]) > 2 * min(left):
            extrapolated = {t: g * (med / t) ** 2 for t in left}
            break
    return {"curve": curve, "found": found, "extrapolated": extrapolated, "targets": targets,
            "search": time.perf_counter() - t_start}


def cell(r, target, theory=None):
    """'products (median error, seconds per call)' for one target, or why there is none."""
    if target in r["found"]:
        g = r["found"][target]
        err, sec = r["curve"][g]
        text = f"{g:,} ({err:.2g}, {sec:.3g} s)"
    elif target in r["extrapolated"]:
        text = f"not reached; ≈ {r['extrapolated'][target]:,.0f} by the 1/√m law"
    else:
        text = "not reached" if target in r["targets"] else "not searched"
    if theory is not None:
        text += f"; theory ≈ {theory:,.0f}"
    return text


def main():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 20))
    y = rng.integers(0, 10, 256)
    problem = cl.Problem(cl.MLP([20, 64, 64, 10], "tanh"), "cross_entropy", X, y)
    w = problem.model.init(0)
    op = cl.operator(problem, w, "ggn")
    P = op.shape[0]

    t0 = time.perf_counter()
    G = cl.ggn(problem, w)
    t_dense = time.perf_counter() - t0
    trace, diag = float(np.trace(G)), np.diag(G).copy()
    t0 = time.perf_counter()
    ev = np.linalg.eigvalsh(G)[::-1]
    t_eig = time.perf_counter() - t0
    del G
    rank = int(np.sum(ev > P * np.finfo(float).eps * ev[0]))
    k90, k99 = (int(np.searchsorted(np.cumsum(ev) / ev.sum(), q)) + 1 for q in (0.9, 0.99))
    fro2 = float(np.sum(ev ** 2))
    off2 = fro2 - float(diag @ diag)             # ‖G − diag(G)‖_F²
    top = {k: float(np.sum(ev[:k] ** 2) / fro2) for k in (32, 96)}
    V = np.random.default_rng(0).choice([-1.0, 1.0], size=(P, 256))
    t0 = time.perf_counter()
    op.matmat(V)
    t_product = (time.perf_counter() - t0) / V.shape[1]

    # Rademacher Hutchinson: Var(vᵀGv) = 2 ‖G − diag G‖_F², and E‖d̂ − d‖² = ‖G − diag G‖_F² / m
    def theory_trace(t):
        return 2 * off2 * (MEDIAN_ABS_NORMAL / (t * trace)) ** 2

    def theory_diag(t):
        return off2 / (t ** 2 * float(diag @ diag))

    runs = [("Hutchinson", "trace", est.hutchinson_trace, trace, (0.01,), True, theory_trace),
            ("Hutch++", "trace", est.hutchpp, trace, (0.01, 0.001), False, None),
            ("XTrace", "trace", est.xtrace, trace, (0.01, 0.001), False, None),
            ("Hutchinson", "diagonal", est.hutchinson_diag, diag, (0.01,), True, theory_diag),
            ("XDiag", "diagonal", est.xdiag, diag, (0.01,), False, None)]
    rows = []
    for name, what, fn, exact, targets, mc, theory in runs:
        r = search(fn, op, exact, targets, mc)
        rows.append((f"{name} ({what})", r, theory))
        print(f"{name} ({what}): reached {r['found']}, searched to {max(r['curve'])} in "
              f"{r['search']:.1f} s", flush=True)

    lines = [
        "# Randomized trace and diagonal estimators on a GGN",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, numpy "
        f"{np.__version__}, one BLAS thread. MLP 20-64-64-10 (tanh), P = {P:,}, 256 samples, "
        "cross-entropy, float64, initial weights; `cl.operator(problem, w, \"ggn\")`, the exact "
        "values from the dense `cl.ggn`. Written by `bench/estimators.py`.",
        "",
        f"The GGN: trace {trace:.6g}, ‖G‖_F² {fro2:.4g}, ‖diag G‖₂² {diag @ diag:.4g}; numerical "
        f"rank {rank:,} (at most N·(K − 1) = 2,304); the top {k90:,} eigenvalues hold 90 % of "
        f"the trace and the top {k99:,} hold 99 %, the top 32 and 96 hold "
        f"{100 * top[32]:.0f} % and {100 * top[96]:.0f} % of ‖G‖_F². Exact references: the "
        f"dense GGN in {t_dense:.2f} s; {P:,} unit-vector products (the exact trace and diagonal, "
        f"matrix-free) would take about {P * t_product:.1f} s at {1e3 * t_product:.2f} ms per "
        "product in blocks of 256.",
        "",
        f"Products for a median relative error ≤ 1 % (and ≤ 0.1 %) over {len(SEEDS)} seeds "
        "(trace: |t̂ − t| / |t|; diagonal: ‖d̂ − d‖₂ / ‖d‖₂), searched over "
        f"{', '.join(map(str, GRID[:6]))}, …, {GRID[-2]}, {GRID[-1]}; in brackets the median "
        "error and the median seconds per call there. Theory: the count at which Rademacher "
        "Hutchinson's median error is the target (trace: Var vᵀGv = 2‖G − diag G‖_F²; "
        "diagonal: E‖d̂ − d‖² = ‖G − diag G‖_F² / m).",
        "",
        "| estimator | products to 1 % | products to 0.1 % | search seconds |",
        "|---|---|---|---:|",
    ]
    for label, r, theory in rows:
        cells = [cell(r, t, theory(t) if theory else None) for t in (0.01, 0.001)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {r['search']:.1f} |")
    lines += ["", "Median relative error by number of products (– where the search had stopped):",
              ""]
    used = [g for g in GRID if any(g in r["curve"] for _, r, _ in rows)]
    lines.append("| products | " + " | ".join(label for label, _, _ in rows) + " |")
    lines.append("|---:|" + "---:|" * len(rows))
    for g in used:
        cells = [f"{r['curve'][g][0]:.3g}" if g in r["curve"] else "–" for _, r, _ in rows]
        lines.append(f"| {g:,} | " + " | ".join(cells) + " |")
    lines += ["", f"Eigen-decomposition for the spectrum summary: {t_eig:.1f} s.", ""]
    text = "\n".join(lines)
    print()
    print(text)
    (ROOT / "bench" / "results_estimators.md").write_text(text)


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
