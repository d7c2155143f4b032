"""Benchmark section for conv nets (called by bench/curvature.py; not a test).

Two nets on the 8×8 digits (N = 256, cross-entropy, float64, ReLU like most CNNs):
    digits conv   Conv(1→4, 3×3, pad 1, ReLU) → MaxPool 2 → Flatten → Dense 10      P = 690
    larger conv   Conv(1→8) → MaxPool 2 → Conv(8→16) → MaxPool 2 → Flatten → Dense 64 (ReLU)
                  → Dense 10 (3×3 kernels, pad 1)                                  P = 6,058
curvlab against jitted JAX (jax.hessian; on the larger net, where jax.hessian runs out of
memory, jitted vmap'd Hessian-vector products over 512 columns at a time), torch.func (small net
only), BackPACK (KFLR / KFRA factors, after the convention mapping below) and curvlinops
(KFACLinearOperator type-2, expand and reduce, joint weight and bias), all in one process.

BackPACK's conv factors: weight [S, A] with A = (1/N) Σₙ Σₜ aₙ,ₜ aₙ,ₜᵀ (no bias row, no 1/T: T
times curvlab's expand A without its bias row) and S = curvlab's *reduce* S (KFLR: location-
summed Jacobians; KFRA: location-summed batch-averaged recursion).
"""

import numpy as np
from torch_tools import torch_func_hessian

import curvlab as cl

CONV_MODELS = {
    "digits conv (Conv 1→4, MaxPool, Dense 10)": lambda: [
        cl.Conv2d(1, 4, 3, padding=1, activation="relu"), cl.MaxPool2d(2), cl.Flatten(), cl.Dense(64, 10)],
    "larger conv (Conv 1→8, Conv 8→16, Dense 64, Dense 10)": lambda: [
        cl.Conv2d(1, 8, 3, padding=1, activation="relu"), cl.MaxPool2d(2),
        cl.Conv2d(8, 16, 3, padding=1, activation="relu"), cl.MaxPool2d(2), cl.Flatten(),
        cl.Dense(64, 64, "relu"), cl.Dense(64, 10)],
}


def conv_problem(modules, N=256, seed=0):
    X, y = cl.datasets.digits(n=N, seed=seed, images=True)
    model = cl.Sequential(modules, input_shape=(1, 8, 8))
    return cl.Problem(model, "cross_entropy", X, y), model.init(seed)


def run_curvlab_conv(p, w, best):
    P, N, K = p.n_params, p.N, p.n_outputs
    v = np.random.default_rng(1).standard_normal(P)
    t = {}
    t["gradient"] = best(lambda: p.grad(w), repeat=50)
    t["hessian"] = best(lambda: cl.hessian(p, w, progress=False))
    t["ggn"] = best(lambda: cl.ggn(p, w))
    J = np.random.default_rng(2).standard_normal((N * K, P))
    t["one JᵀJ product"] = best(lambda: J.T @ J)
    t["hvp"] = best(lambda: cl.hvp(p, w, v), repeat=50)
    t["ggnvp"] = best(lambda: cl.ggnvp(p, w, v), repeat=50)
    for name, fn in [("kfac factors (expand)", lambda: cl.kfac(p, w)),
                     ("kfac factors (reduce)", lambda: cl.kfac(p, w, flavor="reduce")),
                     ("kflr factors (expand)", lambda: cl.kflr(p, w)),
                     ("kfra factors (expand)", lambda: cl.kfra(p, w))]:
        t[name] = best(fn, repeat=20)
    return t


def conv_targets(p, t):
    g = t["gradient"]
    rows = []
    if "jax hessian (jit)" in t:
        rows.append(("hessian / jitted jax hessian", t["hessian"] / t["jax hessian (jit)"], "≤ 0.1"))
    rows += [
        ("ggn / JᵀJ", t["ggn"] / t["one JᵀJ product"], "≤ 1.5"),
        ("hvp / gradient", t["hvp"] / g, "≤ 3"),
        ("kfac (KFC, expand) / gradient", t["kfac factors (expand)"] / g, "≤ 3"),
        ("kfac (KFC, reduce) / gradient", t["kfac factors (reduce)"] / g, "≤ 3"),
        ("kfra / gradient", t["kfra factors (expand)"] / g, "≤ 3"),
        ("kflr / gradient (K backprops by construction)", t["kflr factors (expand)"] / g,
         f"≤ {p.n_outputs + 1} (K + 1)"),
    ]
    return rows


# -- other tools ----------------------------------------------------------------------------

def jax_loss(p):
    """The same net and loss in JAX (NCHW, torch's weight layout; max-pool as reshape + max)."""
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    X, y = jnp.asarray(p.X), jnp.asarray(p.y)
    acts = {"relu": jax.nn.relu, "tanh": jnp.tanh, "identity": lambda x: x}

    def loss(wf):
        x, o = X, 0
        for mod in p.model.modules:
            kind = type(mod).__name__
            if kind in ("Conv2d", "Dense"):
                n, width = mod.n_out, mod.n_in + 1
                Wb = wf[o:o + n * width].reshape(n, width)
                o += n * width
                if kind == "Dense":
                    x = x @ Wb[:, :-1].T + Wb[:, -1]
                else:
                    Wt = Wb[:, :-1].reshape((n, mod.c_in) + mod.kernel)
                    pad = [(mod.padding[0],) * 2, (mod.padding[1],) * 2]
                    x = jax.lax.conv_general_dilated(x, Wt, mod.stride, pad) + Wb[:, -1][None, :, None, None]
                x = acts[mod.act.name](x)
            elif kind == "MaxPool2d":
                (kh, kw), (n_, c_, h_, w_) = mod.kernel, x.shape
                x = x.reshape(n_, c_, h_ // kh, kh, w_ // kw, kw).max(axis=(3, 5))
            elif kind == "Flatten":
                x = x.reshape(x.shape[0], -1)
        return jnp.mean(jax.nn.logsumexp(x, axis=1) - x[jnp.arange(len(y)), y])
    return loss


def run_jax_conv(p, w, H, t, checks, best, rel):
    import jax
    import jax.numpy as jnp
    loss = jax_loss(p)
    jw = jnp.asarray(w)
    if p.n_params <= 2000:
        jh = jax.jit(jax.hessian(loss))
        Hj = np.asarray(jh(jw).block_until_ready())                  # compile
        t["jax hessian (jit)"] = best(lambda: jh(jw).block_until_ready())
        checks["jax.hessian vs curvlab hessian"] = rel(Hj, H)
        return
    # jax.hessian of this net needs ~64 GB: Hessian-vector products, jitted and vmap'd, 512 columns at a time
    hvps = jax.jit(jax.vmap(lambda v: jax.jvp(jax.grad(loss), (jw,), (v,))[1]))
    P, chunk = p.n_params, 512

    def columns():
        return np.concatenate([np.asarray(hvps(jnp.eye(chunk, P, c0))) for c0 in range(0, P, chunk)])[:P]
    Hj = columns()                                                    # compile
    t["jax hessian (jit)"] = best(columns, repeat=1)
    checks["jax hessian (vmap'd hvp columns) vs curvlab hessian"] = rel(Hj, H)


def run_torch_conv(p, w, H, t, checks, best, rel):
    import torch
    torch.set_default_dtype(torch.float64)
    tX, ty = torch.as_tensor(p.X), torch.as_tensor(p.y)
    net = cl.to_torch(p.model, w)
    lossf = torch.nn.CrossEntropyLoss()
    layers = [m for m in net if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    if p.n_params <= 2000:
        out = {}
        hessian = torch_func_hessian(net, lossf, tX, ty, p, w)
        t["torch.func.hessian"] = best(lambda: out.__setitem__("H", hessian()), repeat=1)
        checks["torch.func.hessian vs curvlab hessian"] = rel(out["H"], H)
    run_backpack_conv(p, w, net, layers, tX, ty, t, checks, best, rel)
    run_curvlinops_conv(p, w, net, layers, tX, ty, t, checks, best, rel)


def run_backpack_conv(p, w, net, layers, tX, ty, t, checks, best, rel):
    import torch
    from backpack import backpack, extend
    from backpack.extensions import KFLR, KFRA
    net, lossf = extend(net), extend(torch.nn.CrossEntropyLoss())

    def factors(ext):
        net.zero_grad()
        with backpack(ext):
            lossf(net(tX), ty).backward()
    for name, Ext in [("kflr", KFLR), ("kfra", KFRA)]:
        t[f"backpack {name} factors"] = best(lambda: factors(Ext()), repeat=10)
        ours = getattr(cl, name)
        expand, reduce = ours(p, w, flavor="expand").factors, ours(p, w, flavor="reduce").factors
        err = 0.0
        for layer, mod, (A, _), (_, S_red) in zip(p.model.layers, layers, expand, reduce):
            S_bp, A_bp = getattr(mod.weight, name)
            err = max(err, rel(S_bp.numpy(), S_red), rel(A_bp.numpy(), layer.T * A[:-1, :-1]))
        checks[f"backpack {name} factors vs curvlab (A_bp = T·A_expand, S_bp = S_reduce)"] = err


def run_curvlinops_conv(p, w, net, layers, tX, ty, t, checks, best, rel):
    import torch
    from curvlinops import KFACLinearOperator
    params = [q for mod in layers for q in (mod.weight, mod.bias)]
    names = {mod: name for name, mod in net.named_modules()}
    for flavor in ("expand", "reduce"):
        def build():
            op = KFACLinearOperator(net, torch.nn.CrossEntropyLoss(), params, [(tX, ty)], fisher_type="type-2",
                                    kfac_approx=flavor, separate_weight_and_bias=False, check_deterministic=False)
            op.compute_kronecker_factors()
            return op
        op = build()
        t[f"curvlinops kflr factors ({flavor})"] = best(build, repeat=5)
        ours = cl.kflr(p, w, flavor=flavor).factors
        err = max(max(rel(op._input_covariances[names[mod]].numpy(), A),
                      rel(op._gradient_covariances[names[mod]].numpy(), S))
                  for mod, (A, S) in zip(layers, ours))
        checks[f"curvlinops KFAC type-2 ({flavor}) factors vs curvlab kflr"] = err
