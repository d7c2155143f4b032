"""Benchmark (not a test): R{·} on networks of units.

    .venv/bin/python bench/units.py        # writes bench/results_units.md

Feed-forward: Hv by R{backprop} against one gradient (goal ≤ 4), on a 4-level network of units
with skip connections (10 inputs, two hidden levels of 24, 5 outputs, every unit also wired to
units two levels up), 256 samples, MSE. Recurrent: the same net with feedback edges; the
iterations each relaxation takes to the same tolerance — state, adjoint, R-forward, R-backward —
with the R-relaxations against the gradient's (goal ≤ 2).
"""

import pathlib
import time

import numpy as np

import curvlab as cl
from curvlab import units

ROOT = pathlib.Path(__file__).resolve().parents[1]


def best(fn, repeat=30):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def wiring(rng, feedback=0):
    sizes = [10, 24, 24, 5]
    ids, start = [], 0
    for s in sizes:
        ids.append(list(range(start, start + s)))
        start += s
    edges = [(i, j) for a, b in zip(ids[:-1], ids[1:]) for i in a for j in b]
    edges += [(i, j) for a, b in zip(ids[:-2], ids[2:]) for i in a for j in b if rng.random() < 0.3]
    fb = [(i, j) for i in ids[3] + ids[2] for j in ids[1] if rng.random() < 0.2][:feedback]
    return start, edges + fb, ids[0], ids[3], len(fb)


def main():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((256, 10)), rng.standard_normal((256, 5))
    n, edges, inputs, outputs, _ = wiring(np.random.default_rng(1))
    net = cl.UnitNetwork(n, edges, inputs, outputs, "tanh")
    p = cl.Problem(net, "mse", X, Y)
    w = net.init(0)
    v = rng.standard_normal(net.n_params)
    g = best(lambda: p.grad(w))
    hv = best(lambda: cl.hvp(p, w, v))
    gv = best(lambda: cl.ggnvp(p, w, v))
    rows = [f"# Networks of units\n\nMachine: see bench/results.md. float64, 256 samples, MSE, tanh.\n",
            f"## Feed-forward ({net.n_units} units, {len(edges)} edges, P = {net.n_params:,})\n",
            "| quantity | seconds |", "|---|---:|",
            f"| gradient (backprop) | {g:.4g} |", f"| hvp (R{{backprop}}) | {hv:.4g} |", f"| ggnvp | {gv:.4g} |",
            "", "| target | ratio | goal | met |", "|---|---:|---|---|",
            f"| hvp / gradient | {hv / g:.3g} | ≤ 4 | {'yes' if hv / g <= 4 else '**no**'} |", ""]
    n, edges, inputs, outputs, k = wiring(np.random.default_rng(1), feedback=60)
    rnet = cl.UnitNetwork(n, edges, inputs, outputs, "tanh", tol=1e-12)
    rp = cl.Problem(rnet, "mse", X, Y)
    wr = rnet.init(0)
    wr[len(edges) - k:len(edges)] *= 0.5
    tr = units.trace(rnet, wr, X)
    e = units._output_seed(rnet, tr.y.shape, rp.lossfn.dz(tr.y[:, rnet.outputs], rp.y))
    z, adjoint = units._sweep_back(rnet, tr, e)
    Vmat = np.zeros((1, n, n))
    np.add.at(Vmat, (slice(None), rnet.src, rnet.dst), rng.standard_normal((1, len(edges))))
    Ry, Rx, rforward = units._sweep_forward(rnet, tr, np.einsum("nj,qji->qni", tr.y, Vmat))
    _, rbackward = units._sweep_back(rnet, tr, units._output_seed(rnet, Ry.shape, Ry[..., rnet.outputs]))
    tg = best(lambda: rp.grad(wr), 5)
    th = best(lambda: cl.hvp(rp, wr, rng.standard_normal(rnet.n_params)), 5)
    ratio = max(rforward, rbackward) / max(tr.steps, adjoint)
    rows += [f"## Recurrent ({rnet.n_units} units, {len(edges)} edges of which {k} feedback, P = {rnet.n_params:,})\n",
             "| relaxation (to tol 1e-12) | iterations |", "|---|---:|",
             f"| state y = f(Wᵀy + b) | {tr.steps} |", f"| adjoint z = f'(x)(e + Wz) | {adjoint} |",
             f"| R-forward R{{y}} | {rforward} |", f"| R-backward R{{z}} | {rbackward} |", "",
             "| quantity | seconds |", "|---|---:|", f"| gradient (state + adjoint) | {tg:.4g} |",
             f"| hvp (state + adjoint + two R-relaxations) | {th:.4g} |", "",
             "| target | ratio | goal | met |", "|---|---:|---|---|",
             f"| R-relaxation steps / gradient relaxation steps | {ratio:.3g} | ≤ 2 | {'yes' if ratio <= 2 else '**no**'} |",
             f"| hvp / gradient (recurrent) | {th / tg:.3g} | (no goal) | |", ""]
    text = "\n".join(rows)
    print(text)
    (ROOT / "bench" / "results_units.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
