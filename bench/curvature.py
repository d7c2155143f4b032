"""Benchmark (not a test): curvlab's exact curvature against other tools, same process, same data.

    .venv/bin/python bench/curvature.py                 # writes bench/results.md

Compares with autograd's generic operators always; with JAX (jitted, CPU) and PyTorch
(torch.func) when they are installed:  .venv/bin/pip install -e ".[bench]"
(pinning torch==2.13.0 picks the CPU wheel; an unpinned torch pulls several GB of CUDA). Models: an MLP
20-64-64-10 (tanh, 6,154 parameters) and one ten times smaller, 256 samples, cross-entropy.
"""

import os
import pathlib
import platform
import time

import numpy as np
from autograd import grad as ag_grad
from autograd import hessian as ag_hessian

import curvlab as cl

ROOT = pathlib.Path(__file__).resolve().parents[1]


def best(fn, repeat=3, budget=60.0):
    """Best wall time of `repeat` runs (fewer if one run is slow)."""
    times, t_start = [], time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - t_start > budget:
            break
    return min(times)


def problem_for(sizes, N=256, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, sizes[0]))
    y = rng.integers(0, sizes[-1], N)
    p = cl.Problem(cl.MLP(sizes, "tanh"), "cross_entropy", X, y)
    return p, p.model.init(seed)


def run(sizes, with_autograd_hessian=True):
    p, w = problem_for(sizes)
    P, N, K = p.n_params, p.N, p.n_outputs
    v = np.random.default_rng(1).standard_normal(P)
    r = {}
    r["gradient"] = best(lambda: p.grad(w), repeat=20)
    r["hessian"] = best(lambda: cl.hessian(p, w, progress=False))
    r["ggn"] = best(lambda: cl.ggn(p, w))
    r["fisher (true)"] = best(lambda: cl.fisher(p, w, "true"))
    J = np.random.default_rng(2).standard_normal((N * K, P))
    r["one JᵀJ product"] = best(lambda: J.T @ J)
    r["hvp"] = best(lambda: cl.hvp(p, w, v), repeat=20)
    r["ggnvp"] = best(lambda: cl.ggnvp(p, w, v), repeat=20)
    r["kflr factors"] = best(lambda: cl.kflr(p, w), repeat=10)
    r["kfra factors"] = best(lambda: cl.kfra(p, w), repeat=10)
    r["kfac factors"] = best(lambda: cl.kfac(p, w), repeat=10)
    d1, d2 = cl.landscape.direction(p, w, seed=1), cl.landscape.direction(p, w, seed=2)
    r["51×51 grid"] = best(lambda: cl.landscape.grid(p, w, d1, d2, n=51))
    one = best(lambda: p.loss(w), repeat=20)
    r["2601 single losses"] = 2601 * one
    op = cl.operator(p, w, "hessian")
    counter = {"n": 0}
    from scipy.sparse.linalg import LinearOperator, eigsh
    counted = LinearOperator(op.shape, matvec=lambda x: (counter.__setitem__("n", counter["n"] + 1), op.matvec(x))[1],
                             dtype=np.float64)
    t0 = time.perf_counter()
    eigsh(counted, k=20, which="LA", v0=np.ones(P))
    r["lanczos top-20"] = time.perf_counter() - t0
    r["lanczos products"] = counter["n"]
    if with_autograd_hessian:
        r["autograd hessian"] = best(lambda: ag_hessian(p.loss)(w), repeat=1, budget=1)
    r["autograd grad"] = best(lambda: ag_grad(p.loss)(w), repeat=10)
    r.update(other_tools(p, w))
    return p, r


def other_tools(p, w):
    """jax.hessian (jitted) and torch.func.hessian, when installed."""
    out = {}
    X, y = p.X, p.y
    sizes = p.model.sizes
    try:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)

        def jloss(wf):
            a, o = jnp.asarray(X), 0
            for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
                Wb = wf[o:o + n * (m + 1)].reshape(n, m + 1)
                o += n * (m + 1)
                a = a @ Wb[:, :-1].T + Wb[:, -1]
                if i < len(sizes) - 2:
                    a = jnp.tanh(a)
            return jnp.mean(jax.nn.logsumexp(a, axis=1) - a[jnp.arange(len(y)), y])
        jh = jax.jit(jax.hessian(jloss))
        jw = jnp.asarray(w)
        jh(jw).block_until_ready()
        out["jax.hessian (jit)"] = best(lambda: jh(jw).block_until_ready())
    except ImportError:
        pass
    try:
        import torch
        torch.set_default_dtype(torch.float64)
        tX, ty = torch.as_tensor(X), torch.as_tensor(y)

        def tloss(wf):
            a, o = tX, 0
            for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
                Wb = wf[o:o + n * (m + 1)].reshape(n, m + 1)
                o += n * (m + 1)
                a = a @ Wb[:, :-1].T + Wb[:, -1]
                if i < len(sizes) - 2:
                    a = torch.tanh(a)
            return torch.nn.functional.cross_entropy(a, ty)
        tw = torch.as_tensor(w)
        out["torch.func.hessian"] = best(lambda: torch.func.hessian(tloss)(tw), repeat=1)
    except ImportError:
        pass
    return out


def main():
    lines = ["# curvlab benchmark", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"numpy {np.__version__}. float64, 256 samples, cross-entropy, tanh. Best of a few runs.", ""]
    for sizes in ([20, 64, 64, 10], [20, 16, 16, 10]):
        p, r = run(sizes)
        P = p.n_params
        g = r["gradient"]
        lines += [f"## MLP {'-'.join(map(str, sizes))} (P = {P:,})", "", "| quantity | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in r.items() if k != "lanczos products"]
        lines += ["", "| target | ratio | goal |", "|---|---:|---|"]
        targets = [("hessian / autograd hessian", r["hessian"] / r["autograd hessian"], "≤ 0.1")]
        if "jax.hessian (jit)" in r:
            targets.append(("hessian / jax.hessian", r["hessian"] / r["jax.hessian (jit)"], "≤ 0.25"))
        targets += [
            ("ggn / JᵀJ", r["ggn"] / r["one JᵀJ product"], "≤ 1.5"),
            ("fisher(true) / JᵀJ", r["fisher (true)"] / r["one JᵀJ product"], "≤ 1.5"),
            ("hvp / gradient", r["hvp"] / g, "≤ 3"),
            ("ggnvp / hvp", r["ggnvp"] / r["hvp"], "≤ 1"),
            ("kflr / gradient", r["kflr factors"] / g, f"≤ 3 (and ≤ K+1 = {p.n_outputs + 1})"),
            ("kfra / gradient", r["kfra factors"] / g, "≤ 3"),
            ("kfac / gradient", r["kfac factors"] / g, "≤ 3"),
            ("51×51 grid / 2601 losses", r["51×51 grid"] / r["2601 single losses"], "≤ 0.25"),
            ("lanczos top-20 / (products × hvp)", r["lanczos top-20"] / (r["lanczos products"] * r["hvp"]), "≤ 1.2"),
        ]
        lines += [f"| {name} | {val:.3g} | {goal} |" for name, val, goal in targets]
        lines.append("")
        print("\n".join(lines[-len(targets) - 4:]), flush=True)
    (ROOT / "bench" / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
