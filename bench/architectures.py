"""Benchmark (not a test): curvlab on modern architectures against JAX and torch.func.

    .venv/bin/python bench/architectures.py          # writes bench/results_architectures.md

Two nets with P ≈ 5,000 (issue 21's "Bench"), float64, cross-entropy:
- a tiny transformer: Embedding(V, d), a pre-norm block [LayerNorm + SelfAttention(causal)]
  and [LayerNorm + MLP(gelu)], a final LayerNorm and Dense(d, V) on every position; next-token
  cross-entropy on a sequence task made here (x_{t+1} = (x_t + x_{t-1}) mod V from random
  starts);
- a residual MLP with LayerNorm on Gaussian inputs with random labels.

Rows: curvlab's dense Hessian against JAX (jitted) and torch.func on the same nets written with
elementary ops (the norms as mean / var / sqrt: torch.func's second derivatives through torch's
native layer_norm are wrong, DESIGN.md), first checking the three Hessians agree; hvp and
KFLR (expand) against one gradient. Goals (issue 21): dense Hessian ≤ 0.25× JAX, hvp ≤ 3× a
gradient, KFLR expand ≤ (K + 1)× a gradient, K the columns of a sample's √B (T·V for a
next-token loss). A full jax.hessian / torch.func.hessian of these nets vmaps all P tangents
at once (several GB here), so both are timed as their jitted / vmapped Hessian-vector products
over CHUNK columns at a time (as bench/conv.py does for its larger net); JAX on the transformer
took 1.7, 3.2, 3.6 and 4.0 ms of CPU per column at 16, 64, 256 and 512 columns per batch, so
CHUNK is 16.

Every tool runs on one thread (threadpoolctl, torch.set_num_threads, XLA's single-threaded
CPU client) and every time is the process's CPU time (time.process_time: user + system, so page
faults count), best of repeats: on this 2-core machine shared by up to 8 jobs (load 12-19)
wall-clock times of the same call varied 3-6x, CPU times by about 10 %. Also:
the one-shot hvp of the bench MLP (20-64-64-10, tanh, N = 256) against a gradient, and its
fault counts (`--mlp` prints that alone).
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      "intra_op_parallelism_threads=1")

import pathlib  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import curvlab as cl  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHUNK = 16           # columns per vmapped Hessian-vector batch for JAX and torch.func


def best(fn, repeat=3, budget=30.0):
    """Best CPU time of `repeat` runs (fewer once `budget` seconds have passed)."""
    times, t_start = [], time.process_time()
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
        if time.process_time() - t_start > budget:
            break
    return min(times)


def interleaved(fns, rounds=200):
    """Best time of each of several functions, run in turn `rounds` times (a changing machine
    load hits them all alike)."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.process_time()
            f()
            times[k].append(time.process_time() - t0)
    return {k: min(v) for k, v in times.items()}


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# the nets ---------------------------------------------------------------------------------------

def transformer(V=48, d=16, T=8, N=32, seed=0):
    rng = np.random.default_rng(seed)
    seq = np.zeros((N, T + 1), dtype=int)
    seq[:, :2] = rng.integers(0, V, (N, 2))
    for t in range(2, T + 1):
        seq[:, t] = (seq[:, t - 1] + seq[:, t - 2]) % V
    model = cl.Sequential([
        cl.Embedding(V, d),
        cl.Residual([cl.LayerNorm(d), cl.SelfAttention(d, heads=2, causal=True)]),
        cl.Residual([cl.LayerNorm(d), cl.Dense(d, 4 * d, activation="gelu"), cl.Dense(4 * d, d)]),
        cl.LayerNorm(d),
        cl.Dense(d, V)], input_shape=(T,))
    spec = [("embedding", V, d), ("fork",), ("layernorm", d), ("attention", d, 2), ("join",),
            ("fork",), ("layernorm", d), ("dense", d, 4 * d, "gelu"), ("dense", 4 * d, d, None),
            ("join",), ("layernorm", d), ("dense", d, V, None)]
    p = cl.Problem(model, "cross_entropy", seq[:, :T], seq[:, 1:])
    return p, model.init(seed), spec, T * V


def residual_mlp(D=20, h=32, K=10, blocks=2, N=256, seed=0):
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((N, D)), rng.integers(0, K, N)
    layers, spec = [cl.Dense(D, h, activation="tanh")], [("dense", D, h, "tanh")]
    for _ in range(blocks):
        layers.append(cl.Residual([cl.LayerNorm(h), cl.Dense(h, h, activation="tanh"),
                                   cl.Dense(h, h)]))
        spec += [("fork",), ("layernorm", h), ("dense", h, h, "tanh"), ("dense", h, h, None),
                 ("join",)]
    layers += [cl.LayerNorm(h), cl.Dense(h, K)]
    spec += [("layernorm", h), ("dense", h, K, None)]
    p = cl.Problem(cl.Sequential(layers, input_shape=(D,)), "cross_entropy", X, y)
    return p, p.model.init(seed), spec, K


# the same nets written with elementary ops, for JAX (xp = jax.numpy) and torch ---------------

def plain_loss(ops, spec, x, y):
    """The loss of flat parameters w, in curvlab's flat layout (DESIGN.md): the mean over the
    samples of each sample's cross-entropy summed over its positions."""
    xp, erf, softmax, log_softmax, take = ops

    def dense(x, Wb):
        return x @ Wb[:, :-1].T + Wb[:, -1]

    def layernorm(x, g, b, eps=1e-5):
        mu = xp.mean(x, -1, keepdims=True)
        var = xp.mean((x - mu) ** 2, -1, keepdims=True)
        return (x - mu) / xp.sqrt(var + eps) * g + b

    def attention(x, th, heads):
        N, T, d = x.shape
        dh = d // heads

        def split(z):                                   # (N, T, d) -> (N, h, T, dh)
            return z.reshape(N, T, heads, dh).transpose(1, 2) if xp.__name__ == "torch" \
                else z.reshape(N, T, heads, dh).transpose(0, 2, 1, 3)
        q, k, v = (split(dense(x, th[i])) for i in range(3))
        S = q @ (k.transpose(-1, -2) if xp.__name__ == "torch" else k.swapaxes(-1, -2))
        S = S / np.sqrt(dh)
        causal = np.tril(np.ones((T, T), dtype=bool))
        S = xp.where(xp.asarray(causal) if xp.__name__ != "torch" else xp.as_tensor(causal),
                     S, -1e30)
        o = softmax(S) @ v                              # (N, h, T, dh)
        o = o.transpose(1, 2) if xp.__name__ == "torch" else o.transpose(0, 2, 1, 3)
        return dense(o.reshape(N, T, d), th[3])

    def loss(w):
        h, o, stack = x, 0, []
        for layer in spec:
            kind = layer[0]
            if kind == "fork":
                stack.append(h)
            elif kind == "join":
                h = h + stack.pop()
            elif kind == "embedding":
                V, d = layer[1:]
                h, o = take(w[o:o + V * d].reshape(V, d), h), o + V * d
            elif kind == "layernorm":
                d = layer[1]
                h, o = layernorm(h, w[o:o + d], w[o + d:o + 2 * d]), o + 2 * d
            elif kind == "attention":
                d, heads = layer[1:]
                n = 4 * d * (d + 1)
                h, o = attention(h, w[o:o + n].reshape(4, d, d + 1), heads), o + n
            else:
                _, n_in, n_out, act = layer
                n = n_out * (n_in + 1)
                h, o = dense(h, w[o:o + n].reshape(n_out, n_in + 1)), o + n
                if act == "tanh":
                    h = xp.tanh(h)
                elif act == "gelu":
                    h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
        lp = log_softmax(h)
        picked = xp.sum(lp * y, -1)                      # y one-hot (..., K)
        per_sample = -(xp.sum(picked, -1) if picked.ndim == 2 else picked)
        return xp.mean(per_sample)
    return loss


def jax_loss(p, spec):
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import erf
    jax.config.update("jax_enable_x64", True)
    ops = (jnp, erf, lambda S: jax.nn.softmax(S, -1), lambda z: jax.nn.log_softmax(z, -1),
           lambda E, t: E[t])
    x = jnp.asarray(p.X)
    y = jnp.asarray(np.eye(p.model.out_shape[-1])[p.y])
    return plain_loss(ops, spec, x, y)


def torch_loss(p, spec):
    import torch
    ops = (torch, torch.erf, lambda S: torch.softmax(S, -1),
           lambda z: torch.log_softmax(z, -1), lambda E, t: E[t])
    x = torch.as_tensor(p.X)
    y = torch.as_tensor(np.eye(p.model.out_shape[-1])[p.y])
    return plain_loss(ops, spec, x, y)


def jax_columns(p, spec, w):
    """JAX's Hessian: jitted, vmapped H V (forward over reverse) over CHUNK columns at a time."""
    import jax
    import jax.numpy as jnp
    loss = jax_loss(p, spec)
    jw = jnp.asarray(w)
    hvps = jax.jit(jax.vmap(lambda v: jax.jvp(jax.grad(loss), (jw,), (v,))[1]))
    grad = jax.jit(jax.grad(loss))
    P = p.n_params

    def hessian():
        return np.concatenate([np.asarray(hvps(jnp.eye(CHUNK, P, c0)))
                               for c0 in range(0, P, CHUNK)])[:P]
    return hessian, lambda: grad(jw).block_until_ready()


def torch_columns(p, spec, w):
    """torch.func's Hessian: vmap(jvp(grad)) over CHUNK columns at a time."""
    import torch
    torch.set_default_dtype(torch.float64)
    loss = torch_loss(p, spec)
    tw = torch.as_tensor(w)
    g = torch.func.grad(loss)

    def hvp(v):
        return torch.func.jvp(g, (tw,), (v,))[1]
    hvps = torch.func.vmap(hvp)
    P = p.n_params

    def hessian():
        eye = torch.eye(P)
        return np.concatenate([hvps(eye[c0:c0 + CHUNK]).numpy() for c0 in range(0, P, CHUNK)])
    return hessian


NOTES = """## Notes (by hand, 2026-12-07)

**Dense Hessian: goal (≤ 0.25× JAX) met** (2026-12-07, second session; the figures above).
Before, neither net being a chain, curvlab built the Hessian from P batched H V columns
(`curvature.blocks.hessian_columns`), as JAX's and torch.func's rows do, at about their cost
per column (0.84× and 0.50× JAX). Now (`curvature.blocks.structured_hessian`) a column of H for
W̄_m[i, j] of a Dense, conv, attention or Embedding layer is, by linearity of everything above
s_m in its tangent, Σₙ Σ_t ā_m[n, t, j] × (the R-passes of the unit tangent of s_m[n, t, i]);
with independent samples one R-pass sets that tangent at every sample at once, so a layer
needs T·n passes instead of n·(m + 1), and each block (l, m) is then one matrix product with
inner dimension N·T. Where every later step acts on each position alone and the loss is one
per position (the transformer's MLP block and head) the positions separate like samples: n
passes. The norms' γ, β (96 and 192 columns) keep H V. Per layer on the transformer (CPU s):
Embedding 0.76 (128 passes, and the first touch of the 190 MB matrix, ~0.5 s on this VM),
attention 0.83 (512 passes), LayerNorms 0.21 (H V), Dense 0.45. The residual MLP needs 170
passes for its 5,226 Dense parameters. Results equal to H V columns to 1e-15 and to autograd on
a plain forward (tests/curvature/test_structured_hessian.py).

**The bench MLP's one-shot hvp: goal (≤ 1.5× a gradient) not met** — 1.7-2.0× in CPU time
(was 1.9-2.1× side by side). Almost all of the difference between an hvp and a gradient beyond
their matrix products is fresh memory: glibc trims its heap after each call, so every array a
call holds at its peak is mapped again next call (~2 µs per 4 KiB page here; an N × 64 array is
32 pages). The hvp work cut the hvp's peak: a one-shot H V backpropagates ∂ℓ/∂z inside its
R-backward (`engine.rbackward_fused`: g and δ live only while their step runs; a second product
at the same point keeps the backprop), the R-backward drops each step's R-state once read, the
Affine R-rules form R δ in R s's own array and add products in place (`matmul2d_add`, BLAS with
β = 1), and tanh's f'' g comes from −2 f δ without an f'' array: page faults per hvp 608 → 416
(gradient 194). With trimming off the two engines tie (1.75 vs 1.73): the rest is arithmetic.
By count of matrix products an exact H V is ~2.5× a gradient's (per layer ā Vᵀ, R ā Wᵀ, R δᵀ ā,
δᵀ R ā, R δ W, δ V_W against s, δ W, δᵀ ā), all at the BLAS's peak (~55 µs per 256×65×64
product); tanh (~0.19 ms per 256×64 layer, shared) brings the floor to ~1.5-1.6, and per-call
Python overhead (hvp 0.39 ms, gradient 0.16 ms at N = 2) the rest. What is left: the R-states
the R-backward needs (R s and R a per layer, ~4 arrays here) and B R z (cross-entropy's
`hessian_product` forms B, N × K × K); below 1.5 needs fewer arrays at the hvp's peak or a
trace without the duplicate a / ā copy (shared with the gradient, so it lowers both).
The 1.16× in the issue was not reproduced single-threaded at the commit before the conv
work (aa6014c: 1.8 timed the same way). Counting multiply-adds on this MLP (2026-12-08): a gradient
is 4.36 M (forward 1.58 M, δ W 1.21 M, δᵀ ā 1.58 M), an exact one-shot H V 10.79 M (forward,
ā Vᵀ, R δᵀ ā: 3 × 1.58 M; R ā Wᵀ, δ W, δᵀ R ā, R δ W, δ V_W: 5 × 1.21 M), 2.47× — the goal of
1.5× is below what the products alone cost; a second H V at a kept point is 8.0 M, 1.83×.

**hvp and KFLR** meet their goals on both nets. KFLR expand on the transformer: K = T·V = 384
columns of √B per sample, 118 gradients.
"""


def run_net(name, p, w, spec, K):
    import torch
    torch.set_num_threads(1)
    t, checks = {}, {}
    v = np.random.default_rng(1).standard_normal(p.n_params)
    own = interleaved({"gradient": lambda: p.grad(w), "hvp": lambda: cl.hvp(p, w, v),
                       "kflr expand": lambda: cl.kflr(p, w, flavor="expand")}, rounds=5)
    t.update(own)
    out = {}
    t["hessian"] = best(lambda: out.__setitem__("H", cl.hessian(p, w, progress=False)),
                        repeat=1)
    H = out["H"]
    jh, jgrad = jax_columns(p, spec, w)
    Hj = jh()                                                       # compiles
    jgrad()
    t["jax gradient (jit)"] = best(jgrad, repeat=20)
    t["jax hessian (jit, vmapped hvp)"] = best(lambda: out.__setitem__("Hj", jh()), repeat=1)
    th = torch_columns(p, spec, w)
    t["torch.func hessian (vmapped hvp)"] = best(lambda: out.__setitem__("Ht", th()), repeat=1)
    checks["jax vs curvlab hessian"] = rel(Hj, H)
    checks["torch.func vs curvlab hessian"] = rel(out["Ht"], H)
    checks["jax vs torch.func hessian"] = rel(Hj, out["Ht"])
    targets = [("hessian / jax hessian", t["hessian"] / t["jax hessian (jit, vmapped hvp)"],
                0.25),
               ("hvp / gradient", t["hvp"] / t["gradient"], 3.0),
               (f"kflr expand / gradient (K = {K})", t["kflr expand"] / t["gradient"], K + 1)]
    lines = [f"## {name} (P = {p.n_params:,}, N = {p.N})", "",
             "| quantity | seconds |", "|---|---:|"]
    lines += [f"| {k} | {s:.4g} |" for k, s in t.items()]
    lines += ["", "| target | ratio | goal | met |", "|---|---:|---|---|"]
    lines += [f"| {k} | {r:.3g} | ≤ {g:g} | {'yes' if r <= g else '**no**'} |"
              for k, r, g in targets]
    lines += ["", "| cross-check (relative Frobenius difference) | value |", "|---|---:|"]
    lines += [f"| {k} | {c:.1e} |" for k, c in checks.items()]
    lines.append("")
    print("\n".join(lines), flush=True)
    for k, c in checks.items():
        if not c < 1e-8:
            raise AssertionError(f"{name}: {k} = {c:.2e}, the Hessians disagree")
    return lines


def mlp_hvp_rows(rounds=300):
    """The one-shot hvp of the bench MLP against a gradient, interleaved, and the page faults
    of each (fresh arrays the allocator must map again after trimming its heap)."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((256, 20)), rng.integers(0, 10, 256)
    p = cl.Problem(cl.MLP([20, 64, 64, 10], "tanh"), "cross_entropy", X, y)
    w, v = p.model.init(0), np.ones(p.n_params)
    fns = {"gradient": lambda: p.grad(w), "hvp": lambda: cl.hvp(p, w, v)}
    t = interleaved(fns, rounds)
    faults = {}
    for k, f in fns.items():
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(50):
            f()
        faults[k] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 50
    return t, faults


def main():
    with threadpool_limits(1):
        if "--mlp" in sys.argv:
            print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
            t, faults = mlp_hvp_rows()
            print(f"gradient {t['gradient'] * 1e3:.3f} ms, hvp {t['hvp'] * 1e3:.3f} ms, "
                  f"ratio {t['hvp'] / t['gradient']:.2f}; page faults per call {faults}")
            return
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        lines = ["# curvlab on modern architectures", "",
                 f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
                 f"{platform.python_version()}, numpy {np.__version__}; every tool on one "
                 f"thread, float64. Load at the start: `{load}`.", ""]
        t, faults = mlp_hvp_rows()
        lines += ["## bench MLP 20-64-64-10 (tanh, N = 256): one-shot hvp", "",
                  "| quantity | value |", "|---|---:|",
                  f"| gradient (ms) | {t['gradient'] * 1e3:.3f} |",
                  f"| cl.hvp (ms) | {t['hvp'] * 1e3:.3f} |",
                  f"| hvp / gradient | {t['hvp'] / t['gradient']:.2f} |",
                  f"| page faults per gradient / per hvp | {faults['gradient']:.0f} / "
                  f"{faults['hvp']:.0f} |", ""]
        print("\n".join(lines), flush=True)
        for name, make in (("tiny transformer", transformer), ("residual MLP", residual_mlp)):
            lines += run_net(name, *make())
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        lines += [f"Load at the end: `{load}`.", "", NOTES]
    (ROOT / "bench" / "results_architectures.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
