"""Benchmark (not a test): curvlab's exact curvature against other tools, same process, same data.

    ./run bench                              # from a fresh clone: venv, extras, then this script

which is  .venv/bin/pip install -e ".[bench]"  (JAX, PyTorch CPU wheel, BackPACK, curvlinops)
and  .venv/bin/python bench/curvature.py  (writes bench/results.md; about six minutes).

Compares with autograd's generic operators always; with JAX (jitted, CPU), PyTorch
(torch.func), BackPACK (KFLR, KFRA, K-FAC factors) and curvlinops (Hessian and GGN products)
when they are installed (pinning torch==2.13.0 picks the CPU wheel; an unpinned torch pulls
several GB of CUDA). Every other tool's result is also compared with curvlab's, so the table
doubles as a cross-check. Models: an MLP 20-64-64-10 (tanh, 6,154 parameters) and one about
ten times smaller (20-14-14-10, 654 parameters), 256 samples, cross-entropy, float64; and two
conv nets on the 8×8 digits (bench/conv.py).
"""

import os
import pathlib
import platform
import sys
import time
import tracemalloc

import numpy as np
from autograd import grad as ag_grad
from autograd import hessian as ag_hessian
from scipy.sparse.linalg import LinearOperator

import curvlab as cl
from curvlab.curvature.ggn import gram_ggn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))         # bench/conv.py
from torch_tools import flat_of, torch_func_hessian, torch_params  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELS = ([20, 64, 64, 10], [20, 14, 14, 10])


def best(fn, repeat=3, budget=60.0):
    """Best wall time of `repeat` runs (fewer if the runs take longer than `budget` seconds)."""
    times, t_start = [], time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - t_start > budget:
            break
    return min(times)


def peak_bytes(fn):
    """Peak traced memory (numpy reports its buffers to tracemalloc) while fn runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def problem_for(sizes, N=256, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, sizes[0]))
    y = rng.integers(0, sizes[-1], N)
    p = cl.Problem(cl.MLP(sizes, "tanh"), "cross_entropy", X, y)
    return p, p.model.init(seed)


def lanczos(p, w, times, checks):
    """cl.linalg.lanczos_eigs (ARPACK) top-20 of the Hessian operator: time against (its
    number of products × one product). One product is timed twice: repeated alone (everything
    in cache) and inside the Lanczos run (between ARPACK's steps, which evict the caches)."""
    op = cl.operator(p, w, "hessian")
    count = {"n": 0, "seconds": 0.0}

    def matvec(x):
        t0 = time.perf_counter()
        out = op.matvec(x)
        count["n"] += 1
        count["seconds"] += time.perf_counter() - t0
        return out
    counted = LinearOperator(op.shape, matvec=matvec, dtype=np.float64)
    runs = []
    for _ in range(3):
        count["n"], count["seconds"] = 0, 0.0
        t0 = time.perf_counter()
        cl.linalg.lanczos_eigs(counted, 20)
        runs.append((time.perf_counter() - t0, count["n"], count["seconds"]))
    total, n, in_products = min(runs)
    times["lanczos top-20"] = total
    times["one product inside Lanczos (mean)"] = in_products / n
    checks["lanczos products"] = n
    x = np.random.default_rng(3).standard_normal(p.n_params)
    times["one operator product"] = best(lambda: op.matvec(x), repeat=50)
    # ARPACK's own work per step: the same call on a diagonal operator (a free product).
    d = np.random.default_rng(4).standard_normal(p.n_params) ** 3
    diag = {"n": 0}

    def diag_matvec(x):
        diag["n"] += 1
        return d * x.ravel()
    free = LinearOperator(op.shape, matvec=diag_matvec, dtype=np.float64)
    seconds = best(lambda: (diag.__setitem__("n", 0), cl.linalg.lanczos_eigs(free, 20)))
    times["ARPACK step alone (diagonal operator)"] = seconds / diag["n"]


def grid_floor(p, G=16):
    """Single-core seconds of the work batching cannot remove from a 51×51 grid: every hidden
    activation (tanh) and every product after the first layer, at all 2,601 points (chunks of
    G points, as cl.landscape.grid does them)."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    layers = p.model.layers
    hs = [rng.standard_normal((G, p.N, layer.n_in)) for layer in layers[1:]]
    Ws = [rng.standard_normal((G, layer.n_in, layer.n_out)) for layer in layers[1:]]
    acts = [rng.standard_normal((G, p.N, layer.n_out)) for layer in layers[:-1]]
    outs = [np.empty((G, p.N, layer.n_out)) for layer in layers[1:]]

    def chunk():
        for a in acts:
            np.tanh(a, out=a)
        for h, W, out in zip(hs, Ws, outs):
            np.matmul(h, W, out=out)
    with threadpool_limits(1):
        return best(chunk, repeat=20) * 2601 / G


def lanczos_many_samples(sizes, N, times):
    """The Lanczos ratio again with N samples: a costlier product, the same ARPACK work."""
    p, w = problem_for(sizes, N=N)
    t, checks = {}, {}
    lanczos(p, w, t, checks)
    times[f"lanczos top-20, N = {N:,}"] = t["lanczos top-20"]
    times[f"one operator product, N = {N:,}"] = t["one operator product"]
    times[f"one product inside Lanczos (mean), N = {N:,}"] = t["one product inside Lanczos (mean)"]
    return t["lanczos top-20"] / (checks["lanczos products"] * t["one product inside Lanczos (mean)"])


def run_curvlab(p, w):
    P, N, K = p.n_params, p.N, p.n_outputs
    v = np.random.default_rng(1).standard_normal(P)
    t, checks = {}, {}
    t["gradient"] = best(lambda: p.grad(w), repeat=50)
    t["hessian"] = best(lambda: cl.hessian(p, w, progress=False))
    t["ggn"] = best(lambda: cl.ggn(p, w))
    t["ggn as MᵀM (second route)"] = best(lambda: gram_ggn(p, w))
    t["fisher (true)"] = best(lambda: cl.fisher(p, w, "true"))
    J = np.random.default_rng(2).standard_normal((N * K, P))
    t["one JᵀJ product"] = best(lambda: J.T @ J)
    t["hvp"] = best(lambda: cl.hvp(p, w, v), repeat=50)
    t["ggnvp"] = best(lambda: cl.ggnvp(p, w, v), repeat=50)
    t["kflr factors"] = best(lambda: cl.kflr(p, w), repeat=20)
    t["kfra factors"] = best(lambda: cl.kfra(p, w), repeat=20)
    t["kfac factors"] = best(lambda: cl.kfac(p, w), repeat=20)
    t["diag_hessian"] = best(lambda: cl.diag_hessian(p, w), repeat=10)
    t["ekfac"] = best(lambda: cl.ekfac(p, w), repeat=10)
    d1, d2 = cl.landscape.direction(p, w, seed=1), cl.landscape.direction(p, w, seed=2)
    t["51×51 grid"] = best(lambda: cl.landscape.grid(p, w, d1, d2, n=51), repeat=10)
    t["2601 single losses"] = 2601 * best(lambda: p.loss(w), repeat=50)
    t["grid floor: activations + products, one core"] = grid_floor(p)
    lanczos(p, w, t, checks)
    matrix_bytes = 8 * P * P
    for name, build in [("hessian", lambda: cl.hessian(p, w, progress=False)),
                        ("ggn", lambda: cl.ggn(p, w)), ("fisher (true)", lambda: cl.fisher(p, w, "true"))]:
        checks[f"peak memory / matrix: {name}"] = peak_bytes(build) / matrix_bytes
    return t, checks


def torch_net(p, w):
    """The same MLP in PyTorch, through the public bridge, and its Linear layers."""
    import torch
    net = cl.to_torch(p.model, w)
    return net, [m for m in net if isinstance(m, torch.nn.Linear)]


def run_jax(p, w, H, t, checks):
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    X, y, layers = jnp.asarray(p.X), jnp.asarray(p.y), p.model.layers

    def loss(wf):
        a, o = X, 0
        for i, layer in enumerate(layers):
            Wb = wf[o:o + layer.size].reshape(layer.shape)
            o += layer.size
            a = a @ Wb[:, :-1].T + Wb[:, -1]
            if i < len(layers) - 1:
                a = jnp.tanh(a)
        return jnp.mean(jax.nn.logsumexp(a, axis=1) - a[jnp.arange(len(y)), y])
    jh = jax.jit(jax.hessian(loss))
    jw = jnp.asarray(w)
    Hj = jh(jw).block_until_ready()                                   # compile
    t["jax.hessian (jit)"] = best(lambda: jh(jw).block_until_ready())
    checks["jax.hessian vs curvlab hessian"] = rel(np.asarray(Hj), H)


def run_torch(p, w, H, t, checks):
    import torch
    torch.set_default_dtype(torch.float64)
    net, linears = torch_net(p, w)
    tX, ty = torch.as_tensor(p.X), torch.as_tensor(p.y)
    lossf = torch.nn.CrossEntropyLoss()
    Ht = best_value(torch_func_hessian(net, lossf, tX, ty, p, w), t, "torch.func.hessian", repeat=1)
    checks["torch.func.hessian vs curvlab hessian"] = rel(Ht, H)
    run_curvlinops(p, w, net, linears, tX, ty, lossf, t, checks)
    run_backpack(p, w, tX, ty, t, checks)


def best_value(fn, t, name, repeat=3):
    out = {}

    def call():
        out["v"] = fn()
    t[name] = best(call, repeat=repeat)
    return out["v"]


def run_curvlinops(p, w, net, linears, tX, ty, lossf, t, checks):
    from curvlinops import GGNLinearOperator, HessianLinearOperator
    params = [q for lin in linears for q in (lin.weight, lin.bias)]
    v = np.random.default_rng(1).standard_normal(p.n_params)
    tv = torch_params(p, v)
    for kind, Op, ours in [("hvp", HessianLinearOperator, cl.hvp), ("ggnvp", GGNLinearOperator, cl.ggnvp)]:
        op = Op(net, lossf, params, [(tX, ty)], check_deterministic=False)
        out = best_value(lambda: op @ tv, t, f"curvlinops {kind}", repeat=50)
        checks[f"curvlinops {kind} vs curvlab"] = rel(flat_of(p, out), ours(p, w, v))


def run_backpack(p, w, tX, ty, t, checks):
    import torch
    from backpack import backpack, extend
    from backpack.extensions import KFAC, KFLR, KFRA
    net, linears = torch_net(p, w)
    net, lossf = extend(net), extend(torch.nn.CrossEntropyLoss())

    def factors(ext):
        net.zero_grad()
        with backpack(ext):
            lossf(net(tX), ty).backward()
    for name, Ext in [("kflr", KFLR), ("kfra", KFRA), ("kfac", KFAC)]:
        t[f"backpack {name} factors"] = best(lambda: factors(Ext()), repeat=20)
        if name == "kfac":
            continue                   # Monte-Carlo: different samples, nothing exact to compare
        ours = getattr(cl, name)(p, w).factors
        # BackPACK's weight factors are [S, A] with A over the inputs without the bias row.
        err = max(max(rel(getattr(lin.weight, name)[0].numpy(), S),
                      rel(getattr(lin.weight, name)[1].numpy(), A[:-1, :-1]))
                  for lin, (A, S) in zip(linears, ours))
        checks[f"backpack {name} factors vs curvlab"] = err


def run_own(sizes):
    """curvlab's figures, before any other tool is imported (JAX and PyTorch start thread
    pools of their own that would share the two cores)."""
    p, w = problem_for(sizes)
    t, checks = run_curvlab(p, w)
    if sizes == MODELS[0]:
        checks["lanczos, N = 2,048"] = lanczos_many_samples(sizes, 2048, t)
    return p, w, t, checks


def run_others(p, w, t, checks):
    H = cl.hessian(p, w, progress=False)
    Ha = best_value(lambda: ag_hessian(p.loss)(w), t, "autograd hessian", repeat=1)
    checks["autograd hessian vs curvlab hessian"] = rel(Ha, H)
    t["autograd grad"] = best(lambda: ag_grad(p.loss)(w), repeat=20)
    for other in (run_jax, run_torch):
        try:
            other(p, w, H, t, checks)
        except ImportError as e:
            print(f"skipping {other.__name__}: {e} (install with: .venv/bin/pip install -e '.[bench]')")


def targets(p, t, checks):
    g = t["gradient"]
    rows = [("hessian / autograd hessian", t["hessian"] / t["autograd hessian"], "≤ 0.1")]
    if "jax.hessian (jit)" in t:
        rows.append(("hessian / jax.hessian", t["hessian"] / t["jax.hessian (jit)"], "≤ 0.25"))
    rows += [
        ("ggn / JᵀJ", t["ggn"] / t["one JᵀJ product"], "≤ 1.5"),
        ("fisher(true) / JᵀJ", t["fisher (true)"] / t["one JᵀJ product"], "≤ 1.5"),
        ("hvp / gradient", t["hvp"] / g, "≤ 3"),
        ("ggnvp / hvp", t["ggnvp"] / t["hvp"], "≤ 1"),
        ("kflr / gradient (K backprops by construction)", t["kflr factors"] / g,
         f"≤ {p.n_outputs + 1} (K + 1)"),
        ("kfra / gradient", t["kfra factors"] / g, "≤ 3"),
        ("kfac / gradient", t["kfac factors"] / g, "≤ 3"),
        ("diag_hessian / hessian", t["diag_hessian"] / t["hessian"], "≤ 0.1"),
        ("ekfac refit (ekfac − kflr) / gradient", (t["ekfac"] - t["kflr factors"]) / g, "≤ 5"),
        ("51×51 grid / 2601 losses", t["51×51 grid"] / t["2601 single losses"], "≤ 0.25"),
        ("(bound) grid floor on all cores / 2601 losses",
         t["grid floor: activations + products, one core"] / os.cpu_count() / t["2601 single losses"],
         "≤ 0.25"),
        ("lanczos top-20 / (products × one product inside Lanczos)",
         t["lanczos top-20"] / (checks["lanczos products"] * t["one product inside Lanczos (mean)"]),
         "≤ 1.2"),
        ("lanczos top-20 / (products × one product alone, in cache)",
         t["lanczos top-20"] / (checks["lanczos products"] * t["one operator product"]), "≤ 1.2"),
        ("(bound) 1 + ARPACK step / one product inside Lanczos",
         1 + t["ARPACK step alone (diagonal operator)"] / t["one product inside Lanczos (mean)"], "≤ 1.2"),
    ]
    if "lanczos, N = 2,048" in checks:
        rows.append(("lanczos top-20 / (products × one product inside Lanczos), N = 2,048",
                     checks["lanczos, N = 2,048"], "≤ 1.2"))
    rows += [(f"peak memory / matrix size: {k.split(': ')[1]}", v, "≤ 2")
             for k, v in checks.items() if k.startswith("peak memory")]
    return rows


def conv_sections(conv_runs):
    from conv import conv_targets
    lines = []
    for name, p, w, t, checks in conv_runs:
        section = [f"## {name} (P = {p.n_params:,})", "", "| quantity | seconds |", "|---|---:|"]
        section += [f"| {k} | {v:.4g} |" for k, v in t.items()]
        section += ["", "| target | ratio | goal | met |", "|---|---:|---|---|"]
        for row, val, goal in conv_targets(p, t):
            met = "yes" if val <= float(goal.split()[1]) else "**no**"
            section.append(f"| {row} | {val:.3g} | {goal} | {met} |")
        section += ["", "| cross-check (relative Frobenius difference) | value |", "|---|---:|"]
        section += [f"| {k} | {v:.1e} |" for k, v in checks.items()]
        print("\n".join(section), flush=True)
        lines += section + [""]
    return lines


def run_conv_own():
    from conv import CONV_MODELS, conv_problem, run_curvlab_conv
    out = []
    for name, build in CONV_MODELS.items():
        p, w = conv_problem(build())
        out.append((name, p, w, run_curvlab_conv(p, w, best), {}))
    return out


def run_conv_others(conv_runs):
    from conv import run_jax_conv, run_torch_conv
    for name, p, w, t, checks in conv_runs:
        H = cl.hessian(p, w, progress=False)
        for other in (run_jax_conv, run_torch_conv):
            try:
                other(p, w, H, t, checks, best, rel)
            except ImportError as e:
                print(f"skipping {other.__name__}: {e} (install with: .venv/bin/pip install -e '.[bench]')")


def main():
    lines = ["# curvlab benchmark", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"numpy {np.__version__} (OpenBLAS). float64, 256 samples, cross-entropy, tanh. "
             "Times are the best of several runs, in one process, on the same data; curvlab's rows are "
             "measured first, before JAX and PyTorch are imported.", ""]
    runs = [run_own(sizes) for sizes in MODELS]
    conv_runs = run_conv_own()
    for run in runs:
        run_others(*run)
    run_conv_others(conv_runs)
    for sizes, (p, _, t, checks) in zip(MODELS, runs):
        section = [f"## MLP {'-'.join(map(str, sizes))} (P = {p.n_params:,})", "",
                   "| quantity | seconds |", "|---|---:|"]
        section += [f"| {k} | {v:.4g} |" for k, v in t.items()]
        section += ["", "| target | ratio | goal | met |", "|---|---:|---|---|"]
        for name, val, goal in targets(p, t, checks):
            met = "yes" if val <= float(goal.split()[1]) else "**no**"
            section.append(f"| {name} | {val:.3g} | {goal} | {'(a bound)' if name.startswith('(bound)') else met} |")
        section += ["", "| cross-check (relative Frobenius difference) | value |", "|---|---:|"]
        section += [f"| {k} | {v:.1e} |" for k, v in checks.items() if k.endswith("curvlab") or "vs curvlab" in k]
        section.append(f"\nLanczos used {checks['lanczos products']} Hessian products.\n")
        print("\n".join(section), flush=True)
        lines += section
    lines += conv_sections(conv_runs)
    notes = ROOT / "bench" / "notes.md"
    if notes.exists():
        lines += [notes.read_text()]
    (ROOT / "bench" / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
