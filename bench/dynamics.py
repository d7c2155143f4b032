"""Benchmark (not a test): the cost of tracking curvature during training (cl.dynamics.train).

    .venv/bin/python bench/dynamics.py     # writes bench/results_dynamics.md; a few minutes

1. The goal: tracking the exact sharpness every 10 steps costs at most 3× the untracked run on
   the apps' default problems (curvlab.dashboards.problems: spirals and moons, 150 points,
   MLP 8-8 tanh, cross-entropy, from the initial weights), full-batch GD at η = 0.5 and Adam at
   η = 0.02 (the picker's training), 2,000 steps. Ratio = wall time of
   `train(..., every=10, track=("sharpness",))` over `train(..., track=())`, each the best of
   REPEATS runs (cache off). The same for the issue's 503-parameter net (spirals, 60 points,
   MLP 2-12-29-3 tanh, MSE on one-hot targets, GD η = 0.5), where λ₁ comes from Lanczos.
2. Lanczos on the issue's net along its recorded GD trajectory (101 recorded steps): products
   per recorded step and seconds, warm-started (curvlab.dynamics), cold (the same Lanczos
   from a random start), and ARPACK as `cl.linalg.lanczos_eigs(op, 1)` runs it (cold, tol 0,
   ncv 20); the largest relative error against the dense eigenvalue.
3. The results cache: the same `train` call a second time.
4. Where dense eigh stops paying: seconds per recorded λ₁, dense (`cl.hessian` + eigvalsh)
   against warm-started Lanczos, on MLPs 2-h-h-3 of growing P at a point 200 GD steps in —
   what DENSE_LIMIT is set from.
5. The apps (goals: the dynamics app's first frame within the apps' first-render target,
   about 2 s; its step slider a view change, ≤ 100 ms): the dynamics and uncertainty apps'
   build as their notebooks do it, in a fresh interpreter (imports, then the dashboard: its
   training run and its first figures); the step slider's first visit of a step (the loss
   slice computed) and a return to it (cached); the slice's plane above 600 parameters, by
   Lanczos against the dense eigh it replaced; and the picker's training time (a step of the
   recorded run) in the landscape app.

    .venv/bin/python bench/dynamics.py --apps    # only part 5: rewrites that section

BLAS runs on one thread (as `train` itself does for P ≤ DENSE_LIMIT), so the figures do not
depend on whether the machine's other core is busy; wall times still move with the machine's
load, which the results file records.
"""

import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np
from scipy.sparse.linalg import LinearOperator
from threadpoolctl import threadpool_limits

import curvlab as cl
import curvlab.dynamics as dyn
from curvlab.dashboards.problems import problem_and_point

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPEATS = 3
STEPS = 2000


def best_of(fn, repeats=REPEATS):
    """(smallest wall time, last result) over `repeats` calls."""
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def issue_problem(hidden=(12, 29)):
    X, y = cl.datasets.spirals(n=60, classes=3, seed=0)
    model = cl.MLP([2, *hidden, 3], activation="tanh")
    problem = cl.Problem(model, "mse", X, np.eye(3)[y])
    return problem, model.init(seed=0)


def ratio_rows():
    cases = []
    for ds in ("spirals", "moons"):
        problem, w0 = problem_and_point(ds, "8-8", "tanh", "cross_entropy", "initialisation")
        cases.append((f"{ds} 150 pts, 8-8 tanh, CE", problem, w0, "gd", 0.5))
        cases.append((f"{ds} 150 pts, 8-8 tanh, CE", problem, w0, "adam", 0.02))
    problem, w0 = issue_problem()
    cases.append(("issue's net: spirals 60 pts, 12-29 tanh, MSE", problem, w0, "gd", 0.5))
    rows = []
    for name, problem, w0, method, lr in cases:
        run = lambda track: dyn.train(problem, w0, method, lr=lr, steps=STEPS, every=10,
                                      track=track, cache=False, progress=False)
        t_plain, _ = best_of(lambda: run(()))
        t_track, tracked = best_of(lambda: run(("sharpness",)))
        solver = "dense" if problem.n_params <= dyn.DENSE_LIMIT else "Lanczos (warm)"
        rows.append((name, problem.n_params, method, lr, solver, t_plain, t_track,
                     t_track / t_plain, tracked.sharpness[0], tracked.sharpness.max(),
                     tracked.sharpness[-1]))
        print(rows[-1], flush=True)
    return rows


def lanczos_rows():
    problem, w0 = issue_problem()
    run = dyn.train(problem, w0, "gd", lr=0.5, steps=1000, every=10, track=("eigvals",),
                    cache=False, progress=False)
    exact = run.eigvals[:, -1]
    ops = [cl.operator(problem, w, "hessian") for w in run.ws]
    rows = []
    for label, warm in (("warm-started Lanczos (cl.dynamics)", True),
                        ("cold Lanczos (random start)", False)):
        def go():
            lz = dyn._Lanczos(np.random.default_rng(0), warm)
            vals = [lz.top(op, 1)[0][0] for op in ops]
            return lz.products, np.array(vals)
        t, (products, vals) = best_of(go)
        rows.append((label, products / len(ops), t / len(ops),
                     np.max(np.abs(vals - exact) / exact)))

    def arpack():
        count, vals = [0], []
        for op in ops:
            def mv(v, op=op):
                count[0] += 1
                return op.matvec(v)
            counted = LinearOperator(op.shape, matvec=mv, rmatvec=mv, dtype=np.float64)
            vals.append(cl.linalg.lanczos_eigs(counted, 1, seed=0)[0])
        return count[0], np.array(vals)
    t, (products, vals) = best_of(arpack)
    rows.append(("ARPACK, cl.linalg.lanczos_eigs(op, 1) (cold, tol 0)", products / len(ops),
                 t / len(ops), np.max(np.abs(vals - exact) / exact)))
    for r in rows:
        print(r, flush=True)
    return problem.n_params, len(ops), rows


def crossover_rows():
    rows = []
    for h in (6, 8, 10, 12, 14, 16, 20, 24):
        problem, w0 = issue_problem((h, h))
        w = dyn.train(problem, w0, "gd", lr=0.5, steps=200, every=200, track=(),
                      cache=False, progress=False).ws[-1]
        t_dense, lam = best_of(lambda: np.linalg.eigvalsh(cl.hessian(problem, w,
                                                                       progress=False))[-1])
        lz = dyn._Lanczos(np.random.default_rng(0), True)
        lz.top(cl.operator(problem, w, "hessian"), 1)        # a previous step's vector
        w2 = w - 0.5 * problem.grad(w)                        # the next point, one step on
        t_lz, val = best_of(lambda: lz.top(cl.operator(problem, w2, "hessian"), 1)[0][0])
        lam2 = np.linalg.eigvalsh(cl.hessian(problem, w2, progress=False))[-1]
        rows.append((f"2-{h}-{h}-3", problem.n_params, t_dense, t_lz, abs(val - lam2) / lam2))
        print(rows[-1], flush=True)
    return rows


def cache_hit():
    """Seconds of a repeated `train` call with the same settings (what a view change costs)."""
    problem, w0 = problem_and_point("spirals", "8-8", "tanh", "cross_entropy", "initialisation")
    call = lambda: dyn.train(problem, w0, "gd", lr=0.5, steps=STEPS, every=10, progress=False)
    first, run = best_of(call, 1)
    again, same = best_of(call, 20)
    assert same is run
    return first, again


# ---- 5. the apps ------------------------------------------------------------------------------

COLD = """
import importlib, json, time
t0 = time.perf_counter()
from curvlab.dashboards import query_string
from curvlab.dashboards.{mod} import {cls}
t1 = time.perf_counter()
spent = [0.0]
owner = importlib.import_module("{owner}")
slow = getattr(owner, "{fn}")
def timed(*a, **k):
    t = time.perf_counter()
    try:
        return slow(*a, **k)
    finally:
        spent[0] += time.perf_counter() - t
setattr(owner, "{fn}", timed)
app = {cls}()
app.widget
app.apply_query(query_string())
t2 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, spent[0], app.status.error]))
"""
# what each app's build trains with: (module, function)
TRAINS = {"dynamics": ("curvlab.dynamics", "train"),
          "uncertainty": ("curvlab.dashboards.uncertainty_figs", "problem_and_point")}


def cold_build(mod, cls, repeats=REPEATS):
    """(imports s, build s, of which training s): the app notebook's two cells in a fresh
    interpreter, best of `repeats` (each interpreter starts with empty caches: the build
    trains)."""
    best = (np.inf, np.inf, np.inf)
    owner, fn = TRAINS[mod]
    for _ in range(repeats):
        code = COLD.format(mod=mod, cls=cls, owner=owner, fn=fn)
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
        imp, build, train, error = json.loads(out.strip().splitlines()[-1])
        assert error is None, error
        best = min(best, (imp, build, train), key=lambda r: r[0] + r[1])
    return best


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def slider_rows():
    """The dynamics app's step slider: seconds to show a step the first time (its loss slice
    computed) and again (cached), over the recorded steps of the default run."""
    from curvlab.dashboards.dynamics import DynamicsDashboard
    d = DynamicsDashboard()
    steps = [int(s) for s in d.shown[2].steps[1:]]
    first = [timed(lambda s=s: setattr(d.step, "value", s)) for s in steps]
    again = [timed(lambda s=s: setattr(d.step, "value", s)) for s in steps[::-1]]
    assert d.status.error is None
    return len(steps), np.median(first), max(first), np.median(again), max(again)


def plane_rows():
    """The loss slice's plane (top two Hessian eigenvectors) above 600 parameters: Lanczos
    (`top_two`) against the dense path it replaced (`cl.landscape.direction(..., 'eigen')` for
    index 0 and 1: a dense Hessian and eigh each, here)."""
    from curvlab.dashboards.dynamics_figs import top_two
    problem, w = problem_and_point("digits", "16", "tanh", "mse", "part-trained")
    t_lz, (u1, u2) = best_of(lambda: top_two(problem, w))
    t_dense, (v1, v2) = best_of(lambda: [cl.landscape.direction(problem, w, "eigen", index=j)
                                         for j in (0, 1)], 1)
    return problem.n_params, t_lz, t_dense, min(abs(u1 @ v1), abs(u2 @ v2))


def picker_rows():
    """The landscape app's picker: a step of the recorded run (Adam, lr 0.02, 1000 steps): the
    first step past the first view's (the whole run recorded once), then other steps (look-ups
    plus the slice)."""
    from curvlab.dashboards.landscape import LandscapeDashboard
    d = LandscapeDashboard()
    whole = timed(lambda: setattr(d.picker.step, "value", 1000))
    others = [timed(lambda s=s: setattr(d.picker.step, "value", s)) for s in (100, 700, 0, 250)]
    assert d.status.error is None
    return whole, np.median(others)


def app_section():
    imp_d, build_d, train_d = cold_build("dynamics", "DynamicsDashboard")
    imp_u, build_u, train_u = cold_build("uncertainty", "UncertaintyDashboard")
    n, f_med, f_max, a_med, a_max = slider_rows()
    P, t_lz, t_dense, overlap = plane_rows()
    whole, others = picker_rows()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (np.nan,) * 3
    return [
        "## The apps: first frame and view changes (goals: first frame ≈ 2 s, slider ≤ 100 ms)",
        "",
        f"Load average when measured: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. Each app's "
        "notebook cells (imports; the dashboard built, its query applied) in a fresh "
        f"interpreter, best of {REPEATS}.",
        "",
        "| app | imports s | build to first figure s | of which training s | the training |",
        "|---|---:|---:|---:|---|",
        f"| dynamics | {imp_d:.2f} | **{build_d:.2f}** | {train_d:.2f} | GD, 300 steps, with "
        "λ₁, top-5, all eigenvalues and the overlap every 10 steps |",
        f"| uncertainty | {imp_u:.2f} | **{build_u:.2f}** | {train_u:.2f} | Adam 1000 steps, "
        "then Newton to ‖∇L‖ ≤ 1e-9 |",
        "",
        "The rest of each build is drawing: building the plotly FigureWidgets (their template's "
        "validation is most of it) and the first draw (for the dynamics app, the loss slice at "
        "step 0).",
        "",
        f"The dynamics app's step slider over the {n} recorded steps of its default run: the "
        f"first visit of a step (its loss slice computed: a dense Hessian eigh and "
        f"25 × 25 losses) median **{1e3 * f_med:.0f} ms** (max {1e3 * f_max:.0f}); a return "
        f"to a step (cached) median **{1e3 * a_med:.0f} ms** (max {1e3 * a_max:.0f}).",
        "",
        f"The slice's plane above 600 parameters (digits, MLP 16, MSE, P = {P}): Lanczos "
        f"(`top_two`, eigsh on Hv) {t_lz:.2f} s against {t_dense:.1f} s for the two dense "
        f"eigensolves it replaced (|uᵢ·vᵢ| ≥ {overlap:.12f}).",
        "",
        f"Training time in the picker (landscape app, spirals): the first step past the first "
        f"view's records the whole run (Adam, 1000 steps) once: {whole:.2f} s with the redraw; "
        f"then any step is a look-up plus the slice: median {1e3 * others:.0f} ms.",
    ]


def write_app_section(lines):
    """Replace part 5 in bench/results_dynamics.md (or append it)."""
    path = ROOT / "bench" / "results_dynamics.md"
    text = path.read_text() if path.exists() else ""
    head = text.split("## The apps:")[0].rstrip("\n")
    path.write_text((head + "\n\n" if head else "") + "\n".join(lines) + "\n")


def main():
    if "--apps" in sys.argv[1:]:
        lines = app_section()
        write_app_section(lines)
        print("\n".join(lines))
        return
    t_start = time.perf_counter()
    with threadpool_limits(1):
        ratios = ratio_rows()
        P, M, lanczos = lanczos_rows()
        cross = crossover_rows()
        first, again = cache_hit()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (np.nan,) * 3
    lines = [
        "# Tracking curvature during training (cl.dynamics)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}, one BLAS thread; load average "
        f"at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min). Written by "
        f"`bench/dynamics.py` in {time.perf_counter() - t_start:.0f} s. Times are the best of "
        f"{REPEATS} runs; DENSE_LIMIT = {dyn.DENSE_LIMIT}.",
        "",
        "## Tracking the exact sharpness every 10 steps (goal: ≤ 3× the untracked run)",
        "",
        f"{STEPS:,} full-batch steps from the initial weights; `train(..., every=10, "
        "track=(\"sharpness\",))` against `train(..., track=())` (the same loop: optimiser "
        "step and the loss at every step).",
        "",
        "| problem | P | method | η | λ₁ by | untracked s | tracked s | ratio | λ₁ at 0 / max / "
        "end |",
        "|---|---:|---|---:|---|---:|---:|---:|---|",
    ]
    for name, P_, method, lr, solver, t0, t1, ratio, s0, smax, send in ratios:
        lines.append(f"| {name} | {P_} | {method} | {lr:g} | {solver} | {t0:.2f} | {t1:.2f} | "
                     f"**{ratio:.2f}×** | {s0:.3g} / {smax:.3g} / {send:.3g} |")
    lines += [
        "",
        f"The same call again (the results cache; what an app's view change costs): "
        f"{1e6 * again:.0f} µs, against {first:.2f} s the first time (spirals, GD, "
        f"{STEPS:,} steps).",
    ]
    lines += [
        "",
        f"## Lanczos along a trajectory: warm against cold (P = {P}, {M} recorded steps)",
        "",
        "The issue's net, full-batch GD at η = 0.5 for 1,000 steps, λ₁ at every 10th step "
        "(the edge of stability: the top eigenvector turns between recorded steps). Relative "
        "error against the dense eigenvalue.",
        "",
        "| eigensolver | Hv products per recorded step | ms per recorded step | largest "
        "relative error |",
        "|---|---:|---:|---:|",
    ]
    for label, prods, sec, err in lanczos:
        lines.append(f"| {label} | {prods:.1f} | {1e3 * sec:.1f} | {err:.1e} |")
    lines += [
        "",
        "## Dense eigh against warm-started Lanczos, by size (what DENSE_LIMIT is set from)",
        "",
        "Seconds for one recorded λ₁ at a point 200 GD steps into training (spirals, 60 points, "
        "MSE): dense = `cl.hessian` + `eigvalsh`; Lanczos = warm-started from the previous "
        "step's top eigenvector, one GD step earlier.",
        "",
        "| MLP | P | dense ms | warm Lanczos ms | Lanczos relative error |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, P_, td, tl, err in cross:
        lines.append(f"| {name} | {P_} | {1e3 * td:.1f} | {1e3 * tl:.1f} | {err:.1e} |")
    (ROOT / "bench" / "results_dynamics.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    apps = app_section()
    write_app_section(apps)
    print("\n".join(apps))


if __name__ == "__main__":
    main()
