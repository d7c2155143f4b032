"""Benchmark (not a test): randomized trace and diagonal estimators on a network's GGN.

    .venv/bin/python bench/estimators.py     # writes bench/results_estimators.md; a few minutes

MLP 20-64-64-10 (tanh, P = 6,154), 256 samples, cross-entropy, float64, at the initial
weights. The estimators of `curvlab.estimators` run on the matrix-free GGN operator
`cl.operator(problem, w, "ggn")`; the exact trace and diagonal come from the dense
`cl.ggn(problem, w)`. For each estimator the number of matrix-vector products is searched
over the grid 6, 12, 24, …, 6144 (every value divisible by 2 and 3, all below P) and the
first value at which the median relative error over 10 seeds is at most 1 % is reported —
|t̂ − t| / |t| for the trace, ‖d̂ − d‖₂ / ‖d‖₂ for the diagonal — with the median time of one
call there. Hutchinson's error falls as 1/√matvecs, so its search stops as soon as even the
largest grid value would, by that law, stay above twice the target, and the table gives the
law's extrapolation instead. BLAS runs on one thread, so that the times do not depend on
whether the machine's other cores are busy.
"""

import pathlib
import platform
import time

import numpy as np
from threadpoolctl import threadpool_limits

import curvlab as cl
from curvlab import estimators as est

ROOT = pathlib.Path(__file__).resolve().parents[1]
GRID = [6 * 2 ** j for j in range(11)]          # 6 … 6144
SEEDS = range(10)
TARGET = 0.01


def rel_error(value, exact):
    return float(np.linalg.norm(np.asarray(value) - exact) / np.linalg.norm(exact))


def search(fn, op, exact, monte_carlo):
    """Median error (and time) at each grid value up to the first that meets TARGET."""
    curve, t_start = {}, time.perf_counter()
    for g in GRID:
        errors, times = [], []
        for s in SEEDS:
            t0 = time.perf_counter()
            out = fn(op, g, seed=s)
            times.append(time.perf_counter() - t0)
            errors.append(rel_error(out.value, exact))
        med = float(np.median(errors))
        curve[g] = (med, float(np.median(times)))
        if med <= TARGET:
            return {"found": g, "curve": curve, "search": time.perf_counter() - t_start}
        if monte_carlo and med * np.sqrt(g / GRID[-1]) > 2 * TARGET:
            return {"found": None, "predicted": g * (med / TARGET) ** 2, "curve": curve,
                    "search": time.perf_counter() - t_start}
    return {"found": None, "predicted": None, "curve": curve, "search": time.perf_counter() - t_start}


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
    held = np.cumsum(ev) / ev.sum()
    k90, k99 = (int(np.searchsorted(held, q)) + 1 for q in (0.9, 0.99))
    V = np.random.default_rng(0).choice([-1.0, 1.0], size=(P, 256))
    t0 = time.perf_counter()
    op.matmat(V)
    t_product = (time.perf_counter() - t0) / V.shape[1]

    runs = [("Hutchinson", "trace", est.hutchinson_trace, trace, True),
            ("Hutch++", "trace", est.hutchpp, trace, False),
            ("XTrace", "trace", est.xtrace, trace, False),
            ("Hutchinson", "diagonal", est.hutchinson_diag, diag, True),
            ("XDiag", "diagonal", est.xdiag, diag, False)]
    results = []
    for name, what, fn, exact, mc in runs:
        r = search(fn, op, exact, mc)
        results.append((name, what, r))
        last = max(r["curve"])
        print(f"{name} ({what}): {r['found'] or '-'} products, error {r['curve'][last][0]:.3g} at "
              f"{last}, search {r['search']:.1f} s", flush=True)

    lines = [
        "# Randomized trace and diagonal estimators on a GGN",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, numpy "
        f"{np.__version__}, one BLAS thread. MLP 20-64-64-10 (tanh), P = {P:,}, 256 samples, "
        "cross-entropy, float64, initial weights; `cl.operator(problem, w, \"ggn\")`, the exact "
        "values from the dense `cl.ggn`. Written by `bench/estimators.py`.",
        "",
        f"The GGN: trace {trace:.6g}, ‖diag‖₂ {np.linalg.norm(diag):.4g}; numerical rank {rank:,} "
        f"(at most N·(K − 1) = 2,304); the top {k90:,} eigenvalues hold 90 % of the trace, the "
        f"top {k99:,} hold 99 %. Exact references: the dense GGN in {t_dense:.2f} s; {P:,} "
        f"unit-vector products (exact trace and diagonal, matrix-free) would take about "
        f"{P * t_product:.1f} s at {1e3 * t_product:.2f} ms per product in blocks of 256.",
        "",
        f"Products needed for a median relative error ≤ {TARGET:.0%} over {len(SEEDS)} seeds "
        "(trace: |t̂ − t| / |t|; diagonal: ‖d̂ − d‖₂ / ‖d‖₂), searched over "
        f"{GRID[0]}, {GRID[1]}, {GRID[2]}, …, {GRID[-1]}:",
        "",
        "| estimator | estimates | products to 1 % | median error there | seconds per call there "
        "| search seconds |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, what, r in results:
        if r["found"] is not None:
            (err, sec), count, at = r["curve"][r["found"]], f"{r['found']:,}", ""
        else:
            last = max(r["curve"])
            (err, sec), at = r["curve"][last], f" (at {last:,})"
            count = (f"not reached (≈ {r['predicted']:,.0f} by the 1/√m law, "
                     f"{r['predicted'] / P:.0f} × P)" if r.get("predicted") else "not reached")
        lines.append(f"| {name} | {what} | {count} | {err:.3g}{at} | {sec:.3g} | "
                     f"{r['search']:.1f} |")
    lines += ["", "Median relative error by number of products (– where the search had stopped):",
              ""]
    head = [f"{name} ({what})" for name, what, _ in results]
    used = [g for g in GRID if any(g in r["curve"] for _, _, r in results)]
    lines.append("| products | " + " | ".join(head) + " |")
    lines.append("|---:|" + "---:|" * len(head))
    for g in used:
        cells = [f"{r['curve'][g][0]:.3g}" if g in r["curve"] else "–" for _, _, r in results]
        lines.append(f"| {g:,} | " + " | ".join(cells) + " |")
    lines += ["", f"Eigen-decomposition for the spectrum summary: {t_eig:.1f} s.", ""]
    text = "\n".join(lines)
    print()
    print(text)
    (ROOT / "bench" / "results_estimators.md").write_text(text)


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
