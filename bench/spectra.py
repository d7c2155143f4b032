"""Benchmark (not a test): the whole spectrum of every structured curvature kind, now and at an
earlier commit, on the bench MLPs (20-14-14-10 and 20-64-64-10, 256 samples, cross-entropy).

    .venv/bin/python bench/spectra.py                  # this checkout only
    .venv/bin/python bench/spectra.py --against REV    # and REV (a git worktree, run the same way)
    .venv/bin/python bench/spectra.py --at HEAD --against REV   # a commit instead of the tree

writes bench/results_spectra.md. Since the registry records each kind's structure, `cl.spectrum`
takes a Kronecker-factored kind's eigenvalues from its factors, a diagonal kind's from its
diagonal and a block-diagonal kind's block by block; before, only kfac/kflr/kfra and 'diagonal'
did, and every other kind was built as a dense P x P matrix and decomposed.
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELS = ([20, 14, 14, 10], [20, 64, 64, 10])
KINDS = ("kflr", "kfoc", "tnt", "shampoo", "ekfac", "unitwise", "diagonal", "diag_hessian",
         "diag_ggn_mc")


def measure():
    """{model: {kind: (seconds, top eigenvalue)}}: the best of up to 15 whole-spectrum calls
    (as many as fit in 3 s, at least one), the kind's build included; the top eigenvalue is the
    cross-check between revisions."""
    import numpy as np

    import curvlab as cl
    out = {}
    for sizes in MODELS:
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((256, sizes[0])), rng.integers(0, sizes[-1], 256)
        problem = cl.Problem(cl.MLP(sizes, "tanh"), "cross_entropy", X, y)
        w = problem.model.init(0)
        row = {}
        for kind in KINDS:
            times, top = [], None
            for _ in range(15):
                t0 = time.perf_counter()
                vals = cl.spectrum(problem, w, kind)
                times.append(time.perf_counter() - t0)
                top = float(vals[-1])
                if sum(times) > 3:
                    break
            row[kind] = (min(times), top)
        out["-".join(map(str, sizes)) + f" (P = {problem.n_params:,})"] = row
    return out


def at_revision(rev):
    """measure() at git revision `rev`, in a temporary worktree, in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = pathlib.Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)
        try:
            env = dict(os.environ, PYTHONPATH=str(tree))
            code = (f"import sys, json; sys.path[:0] = [{str(tree)!r}, {str(ROOT / 'bench')!r}]; "
                    "import curvlab, spectra; "
                    f"assert curvlab.__file__.startswith({str(tree)!r}), curvlab.__file__; "
                    "print(json.dumps(spectra.measure()))")
            res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp, check=True,
                                 capture_output=True, text=True)
            return json.loads(res.stdout.strip().splitlines()[-1])
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           check=False, capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="an earlier git revision to time the same way")
    parser.add_argument("--at", help="time this revision instead of the working tree")
    args = parser.parse_args()
    before = at_revision(args.against) if args.against else None
    now = at_revision(args.at) if args.at else measure()
    head = ["| model | kind | seconds now |"] + ([f" seconds at {args.against} | speed-up |"]
                                                  if before else [])
    lines = ["# Spectra of the structured kinds", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}. `cl.spectrum(problem, w, kind)` (all eigenvalues, the "
             "build included), best of up to 15 runs; rerun with "
             "`.venv/bin/python bench/spectra.py --against REV`.", "", "".join(head),
             "|---|---|---:|" + ("---:|---:|" if before else "")]
    for model, row in now.items():
        for kind, (sec, top) in row.items():
            cells = f"| {model} | {kind} | {sec:.4g} |"
            if before:
                old, old_top = before[model][kind]
                same = abs(old_top - top) <= 1e-9 * max(abs(top), 1e-300)
                cells += f" {old:.4g} | {old / sec:.3g}× |" + ("" if same else " (top differs!)")
            lines.append(cells)
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "bench" / "results_spectra.md").write_text(text)


if __name__ == "__main__":
    main()
