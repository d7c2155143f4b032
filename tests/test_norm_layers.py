"""Normalisation layers — LayerNorm (affine, without bias, without affine; vectors and
sequences), RMSNorm, BatchNorm in eval and train mode — inside small nets, against independent
oracles: autograd's generic `hessian` / `jacobian` on a plain forward written here from the
layers' settings alone (torch's layouts and formulas; nothing of curvlab's engine), torch's
double backward through its native layer_norm, and the identities that must hold exactly.
Train-mode BatchNorm couples the samples: its batch GGN is (1/N) Jᵀ B J with J the Jacobian of
the whole batch, not a sum of per-sample terms, and per-sample quantities refuse by name."""

import autograd.numpy as anp
import autograd.scipy.special as aspecial
import numpy as np
import pytest
from autograd import grad, hessian, jacobian

import curvlab as cl
from curvlab import engine
from curvlab.curvature.ggn import gram_ggn

TOL = 1e-10
RNG = np.random.default_rng(0)


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# -- the plain forward, torch's layouts (N, D), (N, T, D), (N, C, H, W) -------------------------

ACT = {
    "tanh": anp.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + anp.exp(-x)),
    "softplus": lambda x: anp.log1p(anp.exp(x)),
    "gelu": lambda x: 0.5 * x * (1.0 + aspecial.erf(x / np.sqrt(2.0))),
    "silu": lambda x: x / (1.0 + anp.exp(-x)),
    "identity": lambda x: x,
}


def _conv2d(x, W, b, padding):
    """Cross-correlation, stride 1, as a sum over kernel offsets (channels first)."""
    p = padding[0]
    x = anp.pad(x, [(0, 0), (0, 0), (p, p), (p, p)], mode="constant")
    kh, kw = W.shape[2:]
    Ho, Wo = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            out = out + anp.einsum("nchw,oc->nohw", x[:, :, i:i + Ho, j:j + Wo], W[:, :, i, j])
    return out + anp.reshape(b, (1, -1, 1, 1))


def _norm(mod, w, o, x):
    """LayerNorm / RMSNorm over the last axis, BatchNorm over axis 1 (torch's formulas)."""
    kind, d = type(mod).__name__, mod.d
    gamma = beta = None
    if mod.affine:
        gamma, o = w[o:o + d], o + d
        if kind != "RMSNorm" and mod.bias:
            beta, o = w[o:o + d], o + d
    if kind == "BatchNorm":
        shape = (1, d) + (1,) * (x.ndim - 2)
        axes = (0,) + tuple(range(2, x.ndim))
        if mod.mode == "train":
            mu = anp.mean(x, axis=axes, keepdims=True)
            var = anp.mean((x - mu) ** 2, axis=axes, keepdims=True)
        else:
            mu, var = np.reshape(mod.running_mean, shape), np.reshape(mod.running_var, shape)
        xh = (x - mu) / anp.sqrt(var + mod.eps)
    else:
        shape = (d,)
        if kind == "LayerNorm":
            mu = anp.mean(x, axis=-1, keepdims=True)
            xh = (x - mu) / anp.sqrt(anp.mean((x - mu) ** 2, axis=-1, keepdims=True) + mod.eps)
        else:
            xh = x / anp.sqrt(anp.mean(x * x, axis=-1, keepdims=True) + mod.eps)
    if gamma is not None:
        xh = xh * anp.reshape(gamma, shape)
    if beta is not None:
        xh = xh + anp.reshape(beta, shape)
    return xh, o


def plain_forward(modules, w, x, o=0):
    for mod in modules:
        kind = type(mod).__name__
        if kind in ("Dense", "Conv2d"):
            n_out, n_in = mod.n_out, mod.n_in
            Wb = anp.reshape(w[o:o + n_out * (n_in + 1)], (n_out, n_in + 1))
            o += n_out * (n_in + 1)
            W, b = Wb[:, :n_in], Wb[:, -1]
            if kind == "Dense":
                s = anp.dot(x, W.T) + b
            else:
                s = _conv2d(x, anp.reshape(W, (n_out, mod.c_in) + mod.kernel), b, mod.padding)
            x = ACT[mod.act.name](s)
        elif kind == "Residual":
            f, o = plain_forward(mod.layers, w, x, o)
            x = x + f
        elif kind in ("LayerNorm", "RMSNorm", "BatchNorm"):
            x, o = _norm(mod, w, o, x)
        elif kind == "AvgPool2d":
            N, C, H, Wd = x.shape
            x = anp.mean(anp.reshape(x, (N, C, H // 2, 2, Wd // 2, 2)), axis=(3, 5))
        elif kind == "Flatten":
            x = anp.reshape(x, (x.shape[0], -1))
        else:
            raise TypeError(kind)
    return x, o


def plain_losses(loss, z, y):
    """Per-sample losses; sequence outputs (N, T, K) sum over their positions."""
    if loss == "cross_entropy":
        m = anp.max(z, axis=-1, keepdims=True)
        lse = anp.log(anp.sum(anp.exp(z - m), axis=-1)) + m[..., 0]
        per = lse - anp.sum(z * np.eye(z.shape[-1])[y], axis=-1)
    elif loss == "mse":
        per = 0.5 * anp.sum((z - y) ** 2, axis=-1)
    else:
        per = anp.sum(anp.logaddexp(0.0, z) - y * z, axis=-1)
    return anp.sum(per, axis=1) if z.ndim == 3 else per


class Oracle:
    """Everything by autograd on the plain forward and loss (of the whole batch)."""

    def __init__(self, problem, loss):
        self.p, self.loss_name = problem, loss

    def z(self, w):
        return plain_forward(self.p.model.modules, w, self.p.X)[0]

    def per(self, w):
        return plain_losses(self.loss_name, self.z(w), self.p.y)

    def L(self, w):
        return anp.mean(self.per(w)) + 0.5 * self.p.l2 * anp.sum(w * w)

    def J(self, w):
        """∂zₙ/∂w of the whole batch, (N, K, P)."""
        N = self.p.N
        return jacobian(lambda v: anp.reshape(self.z(v), (N, -1)))(w)

    def B(self, w):
        z = np.asarray(self.z(w))
        f = lambda zn, n: plain_losses(self.loss_name, zn[None], self.p.y[n:n + 1])[0]
        return np.stack([hessian(lambda v: f(anp.reshape(v, z.shape[1:]), n))(z[n].ravel())
                         for n in range(self.p.N)])

    def GGN(self, w):
        """(1/N) Jᵀ B J with B block-diagonal over the samples, + λI."""
        J, B = self.J(w), self.B(w)
        return np.einsum("nkp,nkj,njq->pq", J, B, J) / self.p.N + self.p.l2 * np.eye(J.shape[2])


def models():
    """(name, modules, input_shape, loss): each norm kind and option in a small net."""
    stats = np.random.default_rng(7)
    mean2, var2 = stats.standard_normal(2) * 0.3, stats.random(2) + 0.5
    return [
        ("residual-layernorm", [cl.Dense(3, 4, "tanh"),
                                cl.Residual([cl.LayerNorm(4), cl.Dense(4, 5, "gelu"),
                                             cl.Dense(5, 4)]),
                                cl.LayerNorm(4), cl.Dense(4, 3)], (3,), "cross_entropy"),
        ("layernorm-options", [cl.Dense(3, 4, "tanh"), cl.LayerNorm(4, bias=False),
                               cl.Dense(4, 4, "sigmoid"), cl.LayerNorm(4, affine=False, eps=1e-3),
                               cl.Dense(4, 2)], (3,), "mse"),
        ("layernorm-sequence", [cl.Dense(2, 4, "tanh"),
                                cl.Residual([cl.LayerNorm(4), cl.Dense(4, 4, "silu")]),
                                cl.LayerNorm(4), cl.Dense(4, 3)], (3, 2), "cross_entropy"),
        ("rmsnorm-silu", [cl.Dense(3, 4, "silu"), cl.RMSNorm(4), cl.Dense(4, 4, "silu"),
                          cl.RMSNorm(4, eps=1e-3), cl.Dense(4, 2)], (3,), "bce"),
        ("cnn-batchnorm-eval", [cl.Conv2d(1, 2, 3, padding=1),
                                cl.BatchNorm(2, running_mean=mean2, running_var=var2),
                                cl.Conv2d(2, 2, 3, padding=1, activation="tanh"),
                                cl.AvgPool2d(2), cl.Flatten(), cl.Dense(8, 2)],
         (1, 4, 4), "cross_entropy"),
        ("cnn-batchnorm-train", [cl.Conv2d(1, 2, 3, padding=1), cl.BatchNorm(2, mode="train"),
                                 cl.Conv2d(2, 2, 3, padding=1, activation="tanh"),
                                 cl.AvgPool2d(2), cl.Flatten(), cl.Dense(8, 2)],
         (1, 4, 4), "cross_entropy"),
        ("mlp-batchnorm-train", [cl.Dense(3, 4, "tanh"), cl.BatchNorm(4, mode="train"),
                                 cl.Dense(4, 4, "softplus"),
                                 cl.BatchNorm(4, mode="train", affine=False), cl.Dense(4, 2)],
         (3,), "mse"),
        ("batchnorm-first-train", [cl.BatchNorm(3, mode="train"), cl.Dense(3, 4, "tanh"),
                                   cl.LayerNorm(4), cl.Dense(4, 2)], (3,), "cross_entropy"),
    ]


MODELS = {name: (mods, shape, loss) for name, mods, shape, loss in models()}
COUPLED = [n for n in MODELS if "train" in n]
INDEPENDENT = [n for n in MODELS if n not in COUPLED]


def make(name, N=5, l2=0.01, seed=0):
    mods, shape, loss = MODELS[name]
    model = cl.Sequential(mods, input_shape=shape)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N,) + shape)
    out = model.out_shape
    K = out[-1]
    if loss == "cross_entropy":
        y = rng.integers(0, K, (N,) + out[:-1])
    elif loss == "bce":
        y = (rng.random((N,) + out) < 0.5).astype(float)
    else:
        y = rng.standard_normal((N,) + out)
    problem = cl.Problem(model, loss, X, y, l2=l2)
    w = model.init(seed) + 0.3 * rng.standard_normal(model.n_params)
    return problem, w, Oracle(problem, loss)


# -- every model: forward, dense matrices, products, landscapes ----------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_forward_hessian_ggn_and_products_match_autograd_on_the_plain_forward(name,
                                                                            record_error):
    problem, w, o = make(name)
    P = problem.n_params
    assert problem.model.couples_samples == (name in COUPLED)
    assert rel(problem.outputs(w), o.z(w)) < 1e-13
    assert abs(problem.loss(w) - o.L(w)) < 1e-13 * abs(o.L(w))
    assert record_error(rel(problem.grad(w), grad(o.L)(w))) < TOL
    H, G = hessian(o.L)(w), o.GGN(w)
    assert record_error(rel(cl.hessian(problem, w), H)) < TOL
    assert record_error(rel(cl.ggn(problem, w), G)) < TOL
    assert record_error(rel(cl.fisher(problem, w), G)) < TOL           # = GGN for these losses
    for Hb, Gb, sl in zip(cl.hessian_blocks(problem, w), cl.ggn_blocks(problem, w),
                          problem.model.layer_slices()):
        assert record_error(rel(Hb, H[sl, sl])) < TOL
        assert record_error(rel(Gb, G[sl, sl])) < TOL
    assert record_error(rel(cl.diag_hessian(problem, w), np.diag(H))) < TOL
    assert record_error(rel(cl.diag_ggn(problem, w), np.diag(G))) < TOL
    V = RNG.standard_normal((P, 2))
    assert record_error(rel(cl.hvp(problem, w, V), H @ V)) < TOL
    assert record_error(rel(cl.ggnvp(problem, w, V), G @ V)) < TOL
    assert record_error(rel(cl.fishervp(problem, w, V[:, 0]), G @ V[:, 0])) < TOL
    J = o.J(w)                                                            # (N, K, P), the batch's
    N, K = J.shape[:2]
    out = (N,) + problem.out_shape
    assert record_error(rel(cl.jvp(problem, w, V[:, 0]), (J @ V[:, 0]).reshape(out))) < TOL
    U = RNG.standard_normal(out)
    assert record_error(rel(cl.vjp(problem, w, U), np.einsum("nk,nkp->p", U.reshape(N, -1), J))) \
        < TOL
    assert record_error(rel(cl.ntk(problem, w), J.reshape(N * K, -1) @ J.reshape(N * K, -1).T)) \
        < TOL
    ev = np.linalg.eigvalsh(H)
    assert record_error(rel(cl.spectrum(problem, w, "hessian", k=2), ev[-2:])) < 1e-8


@pytest.mark.parametrize("name", INDEPENDENT)
def test_per_sample_quantities_match_autograd_when_the_samples_are_independent(name,
                                                                             record_error):
    problem, w, o = make(name)
    P, N = problem.n_params, problem.N
    G = o.GGN(w)
    V = RNG.standard_normal((P, 2))
    assert record_error(rel(cl.ggnvp(problem, w, V, method="jacobian"), G @ V)) < TOL
    S = cl.sqrt_ggn(problem, w)
    assert record_error(rel(S @ S.T, G - problem.l2 * np.eye(P))) < TOL
    g_n = jacobian(o.per)(w)
    assert record_error(rel(cl.per_sample_grads(problem, w), g_n)) < TOL
    EF = g_n.T @ g_n / N + problem.l2 * np.eye(P)
    assert record_error(rel(cl.fisher(problem, w, "empirical"), EF)) < TOL


@pytest.mark.parametrize("name", ["residual-layernorm", "layernorm-sequence",
                                  "cnn-batchnorm-train", "batchnorm-first-train"])
def test_landscapes_take_each_grid_points_own_statistics(name):
    problem, w, o = make(name)
    d1 = cl.landscape.direction(problem, w, "filter", seed=1)
    d2 = cl.landscape.direction(problem, w, "random", seed=2)
    Z = cl.landscape.grid(problem, w, d1, d2, span=0.5, n=3)
    a = np.linspace(-0.5, 0.5, 3)
    want = np.array([[o.L(w + ai * d1 + aj * d2) for aj in a] for ai in a])
    assert rel(Z, want) < 1e-12
    Ws = w + RNG.standard_normal((3, len(w))) * 0.3
    assert rel(cl.landscape.batch_losses(problem, Ws, accuracy=False)[0],
               [o.L(v) for v in Ws]) < 1e-12


# -- identities -------------------------------------------------------------------------------

@pytest.mark.parametrize("modules,shape,loss", [
    ([cl.LayerNorm(4)], (4,), "mse"),
    ([cl.LayerNorm(3, bias=False)], (2, 3), "cross_entropy"),           # sequences, per position
    ([cl.RMSNorm(3)], (3,), "bce"),
    ([cl.BatchNorm(2, mode="train"), cl.Flatten()], (2, 2, 2), "cross_entropy"),
    ([cl.BatchNorm(3, mode="eval", running_mean=[0.1, -0.2, 0.3])], (3,), "mse"),
])
def test_ggn_equals_hessian_for_a_model_linear_in_its_parameters(modules, shape, loss):
    model = cl.Sequential(modules, input_shape=shape)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4,) + shape)
    out = model.out_shape
    y = (rng.integers(0, out[-1], (4,) + out[:-1]) if loss == "cross_entropy"
         else (rng.random((4,) + out) < 0.5).astype(float) if loss == "bce"
         else rng.standard_normal((4,) + out))
    problem = cl.Problem(model, loss, X, y)
    w = model.init(1) + rng.standard_normal(model.n_params)
    H = cl.hessian(problem, w)
    assert rel(cl.ggn(problem, w), H) < 1e-12
    assert rel(H, hessian(Oracle(problem, loss).L)(w)) < TOL


@pytest.mark.parametrize("name", COUPLED)
def test_train_mode_batchnorm_ggn_is_the_batchs_and_not_a_per_sample_sum(name):
    problem, w, o = make(name, l2=0.0)
    N = problem.N
    J, B = o.J(w), o.B(w)                      # J: autograd's Jacobian of the batched forward
    JBJ = np.einsum("nkp,nkj,njq->pq", J, B, J) / N
    G = cl.ggn(problem, w)
    assert rel(G, JBJ) < TOL
    # the per-sample sum a per-sample engine would build: each sample's Jacobian with the batch
    # statistics held fixed (= eval mode at this batch's mean and variance) — not the GGN
    frozen = [cl.BatchNorm(m.d, mode="eval", affine=m.affine,
                           running_mean=m._stats[0], running_var=m._stats[1])
              if type(m).__name__ == "BatchNorm" else m for m in _with_batch_stats(problem, w)]
    p_frozen = cl.Problem(cl.Sequential(frozen, problem.model.input_shape), problem.lossfn,
                          problem.X, problem.y)
    assert not p_frozen.model.couples_samples
    assert rel(p_frozen.outputs(w), problem.outputs(w)) < 1e-13          # the same outputs
    G_frozen = cl.ggn(p_frozen, w)
    if name == "batchnorm-first-train":      # statistics of the data alone do not depend on w
        assert rel(G_frozen, G) < 1e-12
    else:
        assert rel(G_frozen, G) > 1e-2
    # and the coupled GGN's diagonal, and its Gram route, are the batch's too
    assert rel(cl.diag_ggn(problem, w), np.diag(JBJ)) < TOL
    assert rel(gram_ggn(problem, w), JBJ) < TOL


def test_the_batchs_jacobian_rows_on_coupled_samples_in_chunks(monkeypatch):
    problem, w, o = make("mlp-batchnorm-train")
    J = o.J(w)                                                             # (N, K, P)
    N, K, P = J.shape
    per_seed = 8 * N * (P + 2 * sum(problem.model.widths))
    monkeypatch.setattr(engine, "memory_budget", lambda: 4 * 3 * per_seed)   # 3 seeds a chunk
    seeds = RNG.standard_normal((2, N, K))
    rows = problem.point(w).rows(seeds)                                    # (Q, N, P)
    assert rel(rows, np.einsum("qnk,nkp->qnp", seeds, J)) < TOL


def _with_batch_stats(problem, w):
    """The model's modules (top level), each train-mode BatchNorm given `_stats`: the batch's
    mean and biased variance of its input at w, from the plain forward."""
    mods, x, o = problem.model.modules, problem.X, 0
    for mod in mods:
        if type(mod).__name__ == "BatchNorm":
            axes = (0,) + tuple(range(2, x.ndim))
            mod._stats = (np.mean(x, axis=axes), np.var(x, axis=axes))
        x, o = plain_forward([mod], w, x, o)
    return mods


@pytest.mark.parametrize("name", COUPLED)
def test_per_sample_quantities_refuse_by_name_on_coupled_samples(name):
    problem, w, _ = make(name)
    v = np.ones(problem.n_params)
    coupled = r"per-sample quantity.*couples its samples: BatchNorm\(\d, mode='train'\)"
    calls = {
        "per_sample_grads": lambda: cl.per_sample_grads(problem, w),
        "per_sample_grads ": lambda: cl.batch_stats(problem, w),
        "sqrt_ggn": lambda: cl.sqrt_ggn(problem, w),
        "sqrt_ggn  ": lambda: cl.vivit(problem, w),
        r"fisher\(kind='empirical'\)": lambda: cl.fisher(problem, w, "empirical"),
        r"fisher\(kind='mc'\)": lambda: cl.fisher(problem, w, "mc"),
        "empirical Fisher": lambda: cl.fishervp(problem, w, v, kind="empirical"),
        "diag_ggn_mc": lambda: cl.diag_ggn_mc(problem, w),
        r"ggnvp\(method='jacobian'\)": lambda: cl.ggnvp(problem, w, v, method="jacobian"),
    }
    for what, call in calls.items():
        with pytest.raises(ValueError, match=what.strip() + ".*" + coupled):
            call()
    for kind in ("empirical_fisher", "mc_fisher", "diag_ggn_mc"):
        with pytest.raises(ValueError, match=coupled):
            cl.matrix(problem, w, kind)
    for kind in ("kfac", "kflr", "kfra", "ekfac", "kfoc"):     # per-sample statistics
        with pytest.raises(ValueError, match=r"BatchNorm"):
            cl.matrix(problem, w, kind)
    G = cl.ggn(problem, w)
    for kind in ("hessian", "ggn", "fisher", "diagonal", "diag_hessian"):
        M = cl.matrix(problem, w, kind).to_dense()
        assert M.shape == G.shape and np.all(np.isfinite(M))


def test_kronecker_kinds_keep_a_norm_layers_exact_ggn_block_or_refuse_it_by_name():
    """DESIGN: norm layers have no Kronecker structure, the Kronecker kinds use their exact GGN
    block. A kind that does not take norm layers yet refuses them by name."""
    problem, w, o = make("residual-layernorm")
    G = o.GGN(w)
    norms = [l for l, layer in enumerate(problem.model.layers)
             if type(layer).__name__ == "LayerNorm"]
    for kind in ("kflr", "ekfac"):
        try:
            M = cl.matrix(problem, w, kind)
        except ValueError as e:
            assert "not supported yet on models with" in str(e) and "LayerNorm(4)" in str(e)
            continue
        blocks, sl = M.blocks(), problem.model.layer_slices()
        for l in norms:
            assert rel(blocks[l], G[sl[l], sl[l]]) < TOL


# -- torch: double backward through its native layer_norm ---------------------------------------

def test_hessian_equals_torch_double_backward_through_native_layer_norm():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    model = cl.Sequential([cl.Dense(3, 4, "tanh"), cl.LayerNorm(4), cl.Dense(4, 3)], (3,))
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    problem = cl.Problem(model, "cross_entropy", X, y)
    w = model.init(0) + 0.3 * rng.standard_normal(model.n_params)
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def loss(v):                    # curvlab's layout: [W | b] rows, then γ, β, then [W | b]
        W1 = v[:16].reshape(4, 4)
        h = torch.tanh(F.linear(Xt, W1[:, :3], W1[:, 3]))
        h = F.layer_norm(h, (4,), v[16:20], v[20:24], eps=1e-5)
        W2 = v[24:].reshape(3, 5)
        return F.cross_entropy(F.linear(h, W2[:, :4], W2[:, 4]), yt)

    v = torch.tensor(w, requires_grad=True)
    (g,) = torch.autograd.grad(loss(v), v, create_graph=True)
    H = np.stack([torch.autograd.grad(g[i], v, retain_graph=True)[0].numpy()
                  for i in range(len(w))])
    assert abs(problem.loss(w) - loss(v).item()) < 1e-14
    assert rel(cl.hessian(problem, w), H) < TOL


# -- construction, layouts, refusals ------------------------------------------------------------

def test_layouts_defaults_and_parameter_counts():
    model = cl.Sequential([cl.Dense(2, 3), cl.LayerNorm(3), cl.LayerNorm(3, bias=False),
                           cl.LayerNorm(3, affine=False), cl.RMSNorm(3), cl.Dense(3, 4),
                           cl.BatchNorm(4), cl.BatchNorm(4, affine=False)], (2,))
    sizes = [layer.size for layer in model.layers]
    assert sizes == [9, 6, 3, 3, 16, 8]
    w = model.init(0)
    sl = model.layer_slices()
    assert np.array_equal(w[sl[1]], [1, 1, 1, 0, 0, 0])                 # γ = 1 then β = 0
    assert np.array_equal(w[sl[2]], [1, 1, 1]) and np.array_equal(w[sl[3]], [1, 1, 1])
    assert model.layers[3].eps == np.finfo(np.float64).eps               # torch's RMSNorm default
    assert not model.couples_samples
    # β in place after γ: shifting β shifts the LayerNorm's outputs
    one = cl.Sequential([cl.LayerNorm(3)], (3,))
    X = RNG.standard_normal((2, 3))
    v = np.array([2.0, 1.0, 0.5, 0.1, 0.2, 0.3])
    xh = (X - X.mean(1, keepdims=True)) / np.sqrt(X.var(1, keepdims=True) + 1e-5)
    assert np.allclose(one.forward(v, X), xh * v[:3] + v[3:], atol=1e-14)
    # BatchNorm first on a 2-D input reads it channels first, (C, L), like Conv1d
    bn = cl.Sequential([cl.BatchNorm(2, mode="train"), cl.Flatten()], (2, 5))
    Xc = RNG.standard_normal((3, 2, 5))
    want = (Xc - Xc.mean((0, 2), keepdims=True)) / np.sqrt(Xc.var((0, 2), keepdims=True) + 1e-5)
    assert np.allclose(bn.forward(bn.init(0), Xc), want.reshape(3, -1), atol=1e-14)
    assert bn.couples_samples


def test_construction_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"LayerNorm\(3\) expects 3 features .*gets 4"):
        cl.Sequential([cl.Dense(2, 4), cl.LayerNorm(3)], (2,))
    with pytest.raises(ValueError, match=r"last axis .*feature map.*cl.BatchNorm\(2\)"):
        cl.Sequential([cl.Conv2d(1, 2, 3), cl.LayerNorm(2), cl.Flatten()], (1, 4, 4))
    with pytest.raises(ValueError, match=r"sequence .*use cl.LayerNorm\(4\)"):
        cl.Sequential([cl.Dense(2, 4), cl.BatchNorm(4)], (3, 2))
    with pytest.raises(ValueError, match="BatchNorm mode"):
        cl.BatchNorm(3, mode="training")
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        cl.LayerNorm(3, eps=0)
    with pytest.raises(ValueError, match="running_var must be 3 finite numbers"):
        cl.BatchNorm(3, running_var=[1.0, 2.0])
    with pytest.raises(ValueError, match="running_mean and running_var are for mode='eval'"):
        cl.BatchNorm(3, mode="train", running_mean=np.zeros(3))


def test_norm_rules_are_the_jacobian_and_its_transpose():
    """The layers' own tangent and adjoint maps against autograd's Jacobian of their forward."""
    for mod, in_shape in [(cl.LayerNorm(4), (4,)), (cl.RMSNorm(4, eps=1e-3), (2, 4)),
                          (cl.BatchNorm(3, mode="train"), cl.layers.Map((2, 2, 3)))]:
        mod.build(in_shape)
        x = RNG.standard_normal((3,) + tuple(in_shape))
        theta = mod.init(RNG) + 0.3 * RNG.standard_normal(mod.shape)
        f = lambda xx: mod.run(theta, xx)
        y, st = mod.trace(theta, x)
        Jx = jacobian(f)(x).reshape(y.size, x.size)
        dx = RNG.standard_normal((2,) + x.shape)
        Ry, _ = mod.rforward(theta, st, dx, np.zeros((2,) + mod.shape))
        assert np.allclose(Ry.reshape(2, -1), dx.reshape(2, -1) @ Jx.T, atol=1e-13)
        g = RNG.standard_normal((2,) + y.shape)
        gin, rec = mod.backprop(theta, st, g)
        assert np.allclose(gin.reshape(2, -1), g.reshape(2, -1) @ Jx, atol=1e-13)
        Jt = jacobian(lambda t: mod.run(t, x))(theta).reshape(y.size, -1)
        assert np.allclose(mod.param_grads(theta, st, rec), g.reshape(2, -1) @ Jt, atol=1e-13)
