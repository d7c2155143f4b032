"""Benchmark (not a test): curvlab's own bench rows at two commits, side by side, interleaved.

    .venv/bin/python bench/revisions.py OLD NEW      # e.g. aa1defe HEAD

Each commit is checked out in a temporary git worktree and timed in a fresh interpreter, twice,
alternating OLD and NEW so that a machine's changing load hits both; a row's time is the best
over at least 1.5 s of repeats in both runs. Rows: bench/curvature.py's curvlab rows that do not
need another library (gradient, hvp, ggnvp, kflr, kfra, ekfac, diag_hessian, the 51×51 grid, and
the dense Hessian and GGN of the small MLP), on its two MLPs with 256 samples.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]

ROWS = r'''
import json, time
import numpy as np
import curvlab as cl
from curvlab import landscape
rng = np.random.default_rng(0)
out = {}
for sizes in ([20, 14, 14, 10], [20, 64, 64, 10]):
    X, y = rng.standard_normal((256, sizes[0])), rng.integers(0, sizes[-1], 256)
    p = cl.Problem(cl.MLP(sizes, "tanh"), "cross_entropy", X, y)
    w, v = p.model.init(0), np.ones(p.n_params)
    d1, d2 = np.random.default_rng(1).standard_normal((2, p.n_params))
    rows = {"gradient": lambda: p.grad(w), "hvp": lambda: cl.hvp(p, w, v),
            "ggnvp": lambda: cl.ggnvp(p, w, v), "kflr": lambda: cl.kflr(p, w),
            "kfra": lambda: cl.kfra(p, w), "ekfac": lambda: cl.ekfac(p, w),
            "diag_hessian": lambda: cl.diag_hessian(p, w),
            "51x51 grid": lambda: landscape.grid(p, w, d1, d2, n=51)}
    if sizes[1] == 14:
        rows["hessian"], rows["ggn"] = (lambda: cl.hessian(p, w)), (lambda: cl.ggn(p, w))
    for k, f in rows.items():
        ts, t_end = [], time.perf_counter() + 1.5
        while time.perf_counter() < t_end or len(ts) < 3:
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        out[f"{'-'.join(map(str, sizes))} {k}"] = min(ts)
print(json.dumps(out))
'''


def timed(tree):
    env = dict(os.environ, PYTHONPATH=str(tree))
    res = subprocess.run([sys.executable, "-c", ROWS], env=env, cwd=tree, check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    old, new = sys.argv[1:3]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for rev in (old, new):
            trees[rev] = pathlib.Path(tmp) / rev.replace("/", "_")
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach",
                            str(trees[rev]), rev], check=True, capture_output=True)
        try:
            runs = {rev: [] for rev in (old, new)}
            for _ in range(2):
                for rev in (old, new):
                    runs[rev].append(timed(trees[rev]))
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False, capture_output=True)
    print(f"| quantity | {old} (ms) | {new} (ms) | {new} / {old} |\n|---|---:|---:|---:|")
    for k in runs[old][0]:
        a = min(r[k] for r in runs[old]) * 1e3
        b = min(r[k] for r in runs[new]) * 1e3
        print(f"| {k} | {a:.3g} | {b:.3g} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
