"""Models beyond chains — Residual blocks, MeanPool, Dense shared over positions, sequence
outputs (a loss at every position), Conv1d, bias=False, gelu / silu, cl.Function — against
independent oracles: autograd's generic `hessian` / `jacobian` on a plain forward and loss
written here from the layers' settings alone (nothing of curvlab's engine, patches or losses),
finite differences, and the identities that must hold exactly."""

import io

import autograd.numpy as anp
import autograd.scipy.special as aspecial
import numpy as np
import pytest
from autograd import grad, hessian, jacobian

import curvlab as cl
from curvlab import engine, units
from tests.test_attention_layers import plain_attention

TOL = 1e-10
RNG = np.random.default_rng(0)


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# -- the plain forward: torch's layouts (N, D), (N, T, D), (N, C, L), (N, C, H, W) ----------------

ACT = {
    "tanh": anp.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + anp.exp(-x)),
    "relu": lambda x: anp.where(x > 0, x, 0.0),
    "softplus": lambda x: anp.log1p(anp.exp(x)),
    "gelu": lambda x: 0.5 * x * (1.0 + aspecial.erf(x / np.sqrt(2.0))),
    "silu": lambda x: x / (1.0 + anp.exp(-x)),
    "identity": lambda x: x,
}


def _conv(x, W, b, stride, padding):
    """A d-dimensional cross-correlation (d = 1, 2) as a sum over kernel offsets of strided
    slices, channels first."""
    d = W.ndim - 2
    x = anp.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding], mode="constant")
    out_sp = [(n - k) // s + 1 for n, k, s in zip(x.shape[2:], W.shape[2:], stride)]
    out = 0.0
    for offs in np.ndindex(*W.shape[2:]):
        sl = tuple(slice(i, i + s * (o - 1) + 1, s) for i, s, o in zip(offs, stride, out_sp))
        xs = x[(slice(None), slice(None)) + sl]
        Wk = W[(slice(None), slice(None)) + offs]
        out = out + (anp.einsum("ncl,oc->nol", xs, Wk) if d == 1
                     else anp.einsum("nchw,oc->nohw", xs, Wk))
    return out + (0.0 if b is None else anp.reshape(b, (1, -1) + (1,) * d))


def plain_forward(modules, w, x, o=0, maps=False):
    """(outputs, next offset): the layers from their settings; maps: x is channels first."""
    for mod in modules:
        kind = type(mod).__name__
        if kind in ("Dense", "Conv1d", "Conv2d"):
            n_out, n_in, bias = mod.n_out, mod.n_in, mod.bias
            Wb = anp.reshape(w[o:o + n_out * (n_in + bias)], (n_out, n_in + bias))
            o += n_out * (n_in + bias)
            W, b = Wb[:, :n_in], (Wb[:, -1] if bias else None)
            if kind == "Dense":
                s = anp.dot(x, W.T) + (0.0 if b is None else b)
            else:
                Wt = anp.reshape(W, (n_out, mod.c_in) + mod.kernel)           # torch's weight
                s = _conv(x, Wt, b, mod.stride, mod.padding)
                maps = True
            x = ACT[mod.act.name](s)
        elif kind == "Act":
            x = ACT[mod.name](x)
        elif kind == "Residual":
            f, o = plain_forward(mod.layers, w, x, o, maps)
            x = x + f
        elif kind == "Function":
            x = mod.fn(anp.reshape(w[o:o + mod.size], mod.shape), x)
            o += mod.size
        elif kind == "MeanPool":
            x = anp.mean(x, axis=-1 if maps else 1)
            maps = False
        elif kind in ("MaxPool2d", "AvgPool2d"):
            N, C, H, Wd = x.shape
            k = mod.kernel
            r = anp.reshape(x, (N, C, H // k[0], k[0], Wd // k[1], k[1]))
            x = (anp.max if kind == "MaxPool2d" else anp.mean)(r, axis=(3, 5))
        elif kind == "Flatten":
            x = anp.reshape(x, (x.shape[0], -1))
            maps = False
        else:
            raise TypeError(kind)
    return x, o


def plain_losses(loss, z, y):
    """Per-sample losses; sequence outputs (N, T, K) sum over their positions."""
    if loss == "cross_entropy":
        m = anp.max(z, axis=-1, keepdims=True)
        lse = anp.log(anp.sum(anp.exp(z - m), axis=-1)) + m[..., 0]
        picked = anp.sum(z * np.eye(z.shape[-1])[y], axis=-1)
        per = lse - picked
    elif loss == "mse":
        per = 0.5 * anp.sum((z - y) ** 2, axis=-1)
    else:
        per = anp.sum(anp.logaddexp(0.0, z) - y * z, axis=-1)
    return anp.sum(per, axis=1) if z.ndim == 3 else per


class Oracle:
    """Everything by autograd on the plain forward and loss."""

    def __init__(self, problem, loss):
        self.p, self.loss_name = problem, loss
        m = problem.model
        self.maps = m.channels_first

    def z(self, w, X=None):
        X = self.p.X if X is None else X
        return plain_forward(self.p.model.modules, w, X, maps=self.maps)[0]

    def per(self, w, y=None):
        return plain_losses(self.loss_name, self.z(w), self.p.y if y is None else y)

    def L(self, w):
        return anp.mean(self.per(w)) + 0.5 * self.p.l2 * anp.sum(w * w)

    def J(self, w):
        N = self.p.N
        return jacobian(lambda v: anp.reshape(self.z(v), (N, -1)))(w)          # (N, K, P)

    def B(self, w):
        z = np.asarray(self.z(w))
        f = lambda zn, n: plain_losses(self.loss_name, zn[None], self.p.y[n:n + 1])[0]
        return np.stack([hessian(lambda v: f(anp.reshape(v, z.shape[1:]), n))(z[n].ravel())
                         for n in range(self.p.N)])

    def GGN(self, w):
        J, B = self.J(w), self.B(w)
        P = J.shape[2]
        return np.einsum("nkp,nkj,njq->pq", J, B, J) / self.p.N + self.p.l2 * np.eye(P)


def _dense_fn(W, x):
    return anp.tanh(anp.dot(x, W[:, :-1].T) + W[:, -1])


def _rms_scale(g, x):
    """A hand-written normalisation: γ ⊙ x / √(mean x² + ε) over the last axis."""
    return g * x / anp.sqrt(anp.mean(x * x, axis=-1, keepdims=True) + 1e-3)


def _mix_positions(W, x):
    """On a sequence (N, T, D): each position a learned mix of all positions, then tanh."""
    return anp.tanh(anp.einsum("ts,nsd->ntd", W, x))


def models():
    """(name, modules, input_shape, loss): small, every new kind, and the old ones among them."""
    T = 3
    return [
        ("residual-mlp", [cl.Dense(3, 4, "tanh"),
                          cl.Residual([cl.Dense(4, 5, "gelu"), cl.Dense(5, 4, bias=False)]),
                          cl.Residual([cl.Dense(4, 4, "silu")]), cl.Dense(4, 3)],
         (3,), "cross_entropy"),
        ("nested-residual", [cl.Dense(2, 3, "softplus"),
                             cl.Residual([cl.Dense(3, 3, "tanh"),
                                          cl.Residual([cl.Dense(3, 3, "sigmoid")])]),
                             cl.Dense(3, 2)], (2,), "mse"),
        ("sequence-meanpool", [cl.Dense(2, 4, "gelu"),
                               cl.Residual([cl.Dense(4, 4, "tanh", bias=False)]),
                               cl.MeanPool(), cl.Dense(4, 3)], (T, 2), "cross_entropy"),
        ("next-token", [cl.Dense(2, 4, "silu"), cl.Residual([cl.Dense(4, 4, "tanh")]),
                        cl.Function(_mix_positions, (T, T), "mix"), cl.Dense(4, 3)],
         (T, 2), "cross_entropy"),
        ("sequence-mse", [cl.Dense(2, 3, "tanh"), cl.Dense(3, 2)], (T, 2), "mse"),
        ("conv1d", [cl.Conv1d(2, 3, 3, padding=1, activation="tanh"),
                    cl.Conv1d(3, 2, 2, stride=2, activation="gelu", bias=False),
                    cl.Flatten(), cl.Dense(6, 2)], (2, 7), "cross_entropy"),
        ("conv1d-meanpool", [cl.Conv1d(2, 3, 3, activation="silu"), cl.MeanPool(),
                             cl.Dense(3, 2)], (2, 6), "bce"),
        ("residual-cnn", [cl.Conv2d(1, 2, 3, padding=1, activation="tanh", bias=False),
                          cl.Residual([cl.Conv2d(2, 2, 3, padding=1, activation="softplus")]),
                          cl.AvgPool2d(2), cl.Flatten(), cl.Dense(8, 2)], (1, 4, 4), "mse"),
        ("stand-alone-acts", [cl.Dense(3, 4), cl.Act("gelu"),
                              cl.Residual([cl.Dense(4, 4, "tanh"), cl.Act("softplus")]),
                              cl.Act("silu"), cl.Residual([cl.Act("sigmoid")]), cl.Dense(4, 2)],
         (3,), "cross_entropy"),
        ("function", [cl.Dense(3, 4, "tanh"), cl.Function(_rms_scale, (4,), "rms"),
                      cl.Residual([cl.Function(_dense_fn, (4, 5), "dense"),
                                   cl.Dense(4, 4, "sigmoid")]),
                      cl.Dense(4, 2)], (3,), "bce"),
    ]


MODELS = {name: (mods, shape, loss) for name, mods, shape, loss in models()}


def make(name, N=4, l2=0.0, seed=0):
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


@pytest.mark.parametrize("name", list(MODELS))
def test_values_gradients_and_dense_matrices_match_autograd(name, record_error):
    problem, w, o = make(name, l2=0.01)
    assert abs(problem.loss(w) - o.L(w)) < 1e-12 * abs(o.L(w))
    assert record_error(rel(problem.grad(w), grad(o.L)(w))) < TOL
    H = hessian(o.L)(w)
    G = o.GGN(w)
    assert record_error(rel(cl.hessian(problem, w), H)) < TOL
    assert record_error(rel(cl.ggn(problem, w), G)) < TOL
    assert record_error(rel(cl.fisher(problem, w), G)) < TOL          # = GGN for these losses
    for l, (Hb, Gb, sl) in enumerate(zip(cl.hessian_blocks(problem, w), cl.ggn_blocks(problem, w),
                                         problem.model.layer_slices())):
        assert record_error(rel(Hb, H[sl, sl])) < TOL
        assert record_error(rel(Gb, G[sl, sl])) < TOL
    assert record_error(rel(cl.diag_hessian(problem, w), np.diag(H))) < TOL
    assert record_error(rel(cl.diag_ggn(problem, w), np.diag(G))) < TOL
    ev = np.linalg.eigvalsh(H)
    assert record_error(rel(cl.spectrum(problem, w, "hessian", k=2), ev[-2:])) < 1e-8


@pytest.mark.parametrize("name", list(MODELS))
def test_products_and_per_sample_quantities_match_autograd(name, record_error):
    problem, w, o = make(name, l2=0.01)
    P, N = problem.n_params, problem.N
    V = RNG.standard_normal((P, 2))
    H, G = hessian(o.L)(w), o.GGN(w)
    assert record_error(rel(cl.hvp(problem, w, V), H @ V)) < TOL
    for method in ("rop", "jacobian"):
        assert record_error(rel(cl.ggnvp(problem, w, V, method=method), G @ V)) < TOL
    assert record_error(rel(cl.fishervp(problem, w, V[:, 0]), G @ V[:, 0])) < TOL
    J = o.J(w)                                                            # (N, K, P)
    out = (N,) + problem.out_shape
    assert record_error(rel(cl.jvp(problem, w, V[:, 0]), (J @ V[:, 0]).reshape(out))) < TOL
    U = RNG.standard_normal(out)
    assert record_error(rel(cl.vjp(problem, w, U), np.einsum("nk,nkp->p", U.reshape(N, -1), J))) \
        < TOL
    K = J.shape[1]
    assert record_error(rel(cl.ntk(problem, w), J.reshape(N * K, -1) @ J.reshape(N * K, -1).T)) \
        < TOL
    S = cl.sqrt_ggn(problem, w)
    assert record_error(rel(S @ S.T, G - problem.l2 * np.eye(P))) < TOL
    g_n = jacobian(o.per)(w)
    assert record_error(rel(cl.per_sample_grads(problem, w), g_n)) < TOL
    EF = g_n.T @ g_n / N + problem.l2 * np.eye(P)
    assert record_error(rel(cl.fisher(problem, w, "empirical"), EF)) < TOL


@pytest.mark.parametrize("name", ["residual-mlp", "next-token", "function", "residual-cnn"])
def test_finite_differences(name):
    problem, w, _ = make(name)
    v = RNG.standard_normal(problem.n_params)
    v /= np.linalg.norm(v)
    r = 1e-5
    fd_grad = (problem.loss(w + r * v) - problem.loss(w - r * v)) / (2 * r)
    assert abs(problem.grad(w) @ v - fd_grad) < 1e-8 * max(1.0, abs(fd_grad))
    Hv = cl.hvp(problem, w, v)
    assert rel(cl.fd_hvp(problem, w, v, r=1e-4), Hv) < 1e-6


@pytest.mark.parametrize("name", list(MODELS))
def test_landscapes_on_every_model(name):
    problem, w, o = make(name, l2=0.01)
    d1 = cl.landscape.direction(problem, w, "filter", seed=1)
    d2 = cl.landscape.direction(problem, w, "random", seed=2)
    Z = cl.landscape.grid(problem, w, d1, d2, span=0.5, n=5)
    a = np.linspace(-0.5, 0.5, 5)
    want = np.array([[o.L(w + ai * d1 + aj * d2) for aj in a] for ai in a])
    assert rel(Z, want) < 1e-12
    Ws = w + RNG.standard_normal((3, len(w))) * 0.1
    got = cl.landscape.batch_losses(problem, Ws, accuracy=False)[0]
    assert rel(got, [o.L(v) for v in Ws]) < 1e-12
    Zq = cl.landscape.quadratic(problem, w, d1, d2, kind="hessian", span=0.5, n=5)
    H = hessian(o.L)(w)
    A, B = np.meshgrid(a, a, indexing="ij")
    g = grad(o.L)(w)
    want_q = (o.L(w) + A * (g @ d1) + B * (g @ d2)
              + 0.5 * (A * A * (d1 @ H @ d1) + 2 * A * B * (d1 @ H @ d2) + B * B * (d2 @ H @ d2)))
    assert rel(Zq, want_q) < 1e-10


# -- identities ------------------------------------------------------------------------------

@pytest.mark.parametrize("modules,shape,loss", [
    ([cl.Dense(3, 4)], (5, 3), "cross_entropy"),                        # per position, shared W̄
    ([cl.Dense(3, 2, bias=False), cl.MeanPool()], (4, 3), "bce"),
    ([cl.Conv1d(2, 3, 2, stride=2), cl.Flatten()], (2, 6), "mse"),
    ([cl.Function(lambda W, x: anp.dot(x, W.T), (2, 3), "linear")], (3,), "cross_entropy"),
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
    assert rel(H, hessian(problem.loss)(w)) < TOL


def test_a_residual_of_a_zero_block_is_the_identity():
    rng = np.random.default_rng(4)
    block = [cl.Dense(3, 5, "gelu"), cl.Dense(5, 3)]
    with_skip = cl.Sequential([cl.Dense(4, 3, "tanh"), cl.Residual(block), cl.Dense(3, 2)], (4,))
    without = cl.Sequential([cl.Dense(4, 3, "tanh"), cl.Dense(3, 2)], (4,))
    X, y = rng.standard_normal((6, 4)), rng.integers(0, 2, 6)
    p1, p0 = (cl.Problem(m, "cross_entropy", X, y) for m in (with_skip, without))
    w0 = without.init(0) + 0.3 * rng.standard_normal(without.n_params)
    sl = with_skip.layer_slices()
    w1 = np.concatenate([w0[:15], rng.standard_normal(sl[1].stop - sl[1].start),
                         np.zeros(sl[2].stop - sl[2].start), w0[15:]])     # the block's output: 0
    keep = np.r_[0:15, sl[3]]
    assert np.array_equal(p1.outputs(w1), p0.outputs(w0))
    assert rel(p1.grad(w1)[keep], p0.grad(w0)) < 1e-14
    H1 = cl.hessian(p1, w1)
    assert rel(H1[np.ix_(keep, keep)], cl.hessian(p0, w0)) < 1e-13
    assert np.all(H1[sl[1], sl[1]] == 0)                       # behind a zero layer: no curvature
    assert rel(H1, hessian(p1.loss)(w1)) < TOL


@pytest.mark.parametrize("shape", [(4,), (3, 4)])
def test_a_function_copy_of_a_dense_layer_gives_the_built_in_numbers(shape):
    rng = np.random.default_rng(5)
    built = cl.Sequential([cl.Dense(4, 5, "tanh"), cl.Residual([cl.Dense(5, 5, "tanh")]),
                           cl.Dense(5, 2)], shape)
    own = cl.Sequential([cl.Function(_dense_fn, (5, 5), "dense"),
                         cl.Residual([cl.Function(lambda W, x: anp.tanh(anp.dot(x, W[:, :-1].T)
                                                                        + W[:, -1]), (5, 6))]),
                         cl.Dense(5, 2)], shape)
    X = rng.standard_normal((5,) + shape)
    y = rng.integers(0, 2, (5,) + shape[:-1])
    pb, pf = (cl.Problem(m, "cross_entropy", X, y, l2=0.1) for m in (built, own))
    w = built.init(2) + 0.3 * rng.standard_normal(built.n_params)
    V = rng.standard_normal((len(w), 3))
    for f in (lambda p: p.loss(w), lambda p: p.grad(w), lambda p: cl.hessian(p, w),
              lambda p: cl.ggn(p, w), lambda p: cl.hvp(p, w, V), lambda p: cl.ggnvp(p, w, V),
              lambda p: cl.diag_ggn(p, w), lambda p: cl.per_sample_grads(p, w),
              lambda p: cl.jvp(p, w, V), lambda p: cl.ntk(p, w),
              lambda p: cl.landscape.grid(p, w, V[:, 0], V[:, 1], n=3)):
        assert rel(f(pf), f(pb)) < 1e-12


def test_kflr_equals_the_ggn_block_for_one_sample_at_one_position_on_chains():
    rng = np.random.default_rng(6)
    # a Conv1d with one output location, then Dense layers with and without bias
    model = cl.Sequential([cl.Conv1d(2, 3, 4, activation="tanh"), cl.Flatten(),
                           cl.Dense(3, 4, "gelu", bias=False), cl.Dense(4, 3)], (2, 4))
    problem = cl.Problem(model, "cross_entropy", rng.standard_normal((1, 2, 4)), [1])
    w = model.init(0) + 0.3 * rng.standard_normal(model.n_params)
    G = cl.ggn(problem, w)
    for flavor in ("expand", "reduce"):
        for kind in (cl.kflr, cl.kfra):
            for B, sl in zip(kind(problem, w, flavor=flavor).blocks(), model.layer_slices()):
                assert rel(B, G[sl, sl]) < 1e-12
    assert rel(G, hessian(problem.loss)(w)) > 1e-3                     # gelu: not the Hessian


@pytest.mark.parametrize("name", ["residual-mlp", "sequence-meanpool", "next-token", "function"])
def test_chain_kinds_refuse_beyond_chains_by_name_and_every_other_kind_builds(name):
    problem, w, _ = make(name)
    refused = cl.kinds(chains_only=True)
    assert {"kfra", "kfoc", "tnt", "shampoo", "unitwise"} <= set(refused)
    assert not {"kflr", "kfac", "ekfac"} & set(refused)        # the K-FAC family: any graph
    for kind in refused:
        with pytest.raises(ValueError, match=r"not supported yet on models with .*works on chains"
                                             r".*every exact quantity works"):
            cl.matrix(problem, w, kind)
    G = cl.ggn(problem, w)
    for kind in cl.kinds(chains_only=False):
        M = cl.matrix(problem, w, kind).to_dense()
        assert M.shape == G.shape and np.all(np.isfinite(M))
        if kind in ("ggn", "fisher"):
            assert rel(M, G) < 1e-12
        if kind == "diagonal":
            assert rel(np.diag(M), np.diag(G)) < 1e-12


def test_sequence_outputs_sum_over_positions_and_average_over_samples():
    problem, w, _ = make("next-token", N=3)
    z = problem.outputs(w)
    assert z.shape == (3, 3, 3)
    m = z.max(-1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))
    per_position = -np.take_along_axis(logp, problem.y[..., None], -1)[..., 0]     # (N, T)
    assert abs(problem.loss(w) - per_position.sum(1).mean()) < 1e-14
    Zacc = cl.landscape.grid(problem, w, cl.landscape.direction(problem, w, seed=0), n=3,
                             accuracy=True)[1]
    assert abs(Zacc[1] - np.mean(z.argmax(-1) == problem.y)) < 1e-15


def test_mc_fisher_on_sequence_outputs_tends_to_the_true_fisher():
    problem, w, _ = make("sequence-mse", N=2)
    F = cl.fisher(problem, w)
    mc = cl.fisher(problem, w, "mc", samples=4000, seed=0)
    assert rel(mc, F) < 0.1


# -- construction and the layers' own rules ----------------------------------------------------

def test_construction_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs f to keep the shape"):
        cl.Sequential([cl.Dense(3, 4), cl.Residual([cl.Dense(4, 2)]), cl.Dense(2, 1)], (3,))
    with pytest.raises(ValueError, match="at least one layer"):
        cl.Residual([])
    with pytest.raises(ValueError, match="mixes the samples"):
        cl.Sequential([cl.Function(lambda g, x: g * (x - x.mean(0)), (3,))], (3,))
    with pytest.raises(ValueError, match=r"must return \(N, \*features\)"):
        cl.Sequential([cl.Function(lambda g, x: anp.sum(g * x, 1), (3,))], (3,))
    with pytest.raises(ValueError, match=r"MeanPool\(\) averages over the positions"):
        cl.Sequential([cl.MeanPool()], (3,))
    with pytest.raises(ValueError, match=r"put cl.Flatten\(\) before it"):
        cl.Sequential([cl.Conv1d(2, 2, 3), cl.Dense(2, 1)], (2, 5))
    with pytest.raises(ValueError, match=r"X must have shape \(N, 2, 5\).*NCL"):
        cl.Problem(cl.Sequential([cl.Conv1d(2, 2, 3), cl.Flatten()], (2, 5)), "mse",
                   np.zeros((3, 5, 2)), np.zeros((3, 6)))
    with pytest.raises(ValueError, match=r"targets of shape \(2, 3\), one per position"):
        cl.Problem(cl.Sequential([cl.Dense(2, 4)], (3, 2)), "cross_entropy", np.zeros((2, 3, 2)),
                   np.zeros(2, int))


def test_layouts_and_parameter_counts():
    model = cl.Sequential([cl.Conv1d(2, 3, 2, bias=False), cl.Flatten(),
                           cl.Dense(12, 2, bias=False)], (2, 5))
    assert model.layer_slices() == [slice(0, 12), slice(12, 36)]
    assert [l.shape for l in model.layers] == [(3, 4), (2, 12)]
    # Conv1d's W columns are torch's weight.reshape(c_out, -1), ordered (c_in, k)
    conv = model.layers[0]
    X = np.arange(10.0).reshape(1, 2, 5)
    P = conv.patches(model.prepare(X))[0]
    assert np.array_equal(P[1], X[0, :, 1:3].ravel())
    # bias=False Dense on a sequence: shared over positions, one W
    seq = cl.Sequential([cl.Dense(3, 2, bias=False)], (4, 3))
    w = seq.init(0)
    Xs = RNG.standard_normal((2, 4, 3))
    assert np.allclose(seq.forward(w, Xs), Xs @ w.reshape(2, 3).T)


@pytest.mark.parametrize("mod,in_shape", [
    (cl.Conv1d(2, 3, 3, stride=2, padding=1), cl.layers.Map((7, 2))),
    (cl.Dense(3, 2), (4, 3)),
])
def test_patches_adjoint_is_the_transpose(mod, in_shape):
    mod.build(in_shape)
    x = RNG.standard_normal((2,) + tuple(in_shape))
    P = mod.patches(x)
    J = jacobian(mod.patches)(x).reshape(P.size, x.size)
    g = RNG.standard_normal(P.shape)
    assert np.allclose(mod.patches_T(g).ravel(), g.ravel() @ J, atol=1e-14)


def test_mean_pool_push_pull_and_forward_agree():
    mod = cl.MeanPool()
    mod.build((4, 3))
    x = RNG.standard_normal((2, 4, 3))
    y, st = mod.forward(x)
    J = jacobian(mod.apply)(x).reshape(y.size, x.size)
    dx = RNG.standard_normal((2,) + x.shape)
    assert np.allclose(mod.push(st, dx).reshape(2, -1), dx.reshape(2, -1) @ J.T, atol=1e-15)
    dy = RNG.standard_normal((2,) + y.shape)
    assert np.allclose(mod.pull(st, dy).reshape(2, -1), dy.reshape(2, -1) @ J, atol=1e-15)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu", "softplus", "gelu", "silu",
                                  "identity"])
def test_activation_derivatives_from_one_evaluation_equal_the_separate_ones(name):
    act = cl.layers.ACTIVATIONS[name]
    x = np.linspace(-6, 6, 121) + 0.013
    f, fp = act.f_df(x)
    assert np.array_equal(f, act.f(x)) and np.allclose(fp, act.df(x), rtol=1e-15, atol=0)
    assert np.allclose(act.d2f_from(x, f, fp), act.d2f(x), rtol=1e-14, atol=1e-300)


def test_the_engine_walks_every_model_with_the_same_program():
    problem, w, _ = make("residual-mlp")
    model = problem.model
    kinds = [s if isinstance(s, str) else type(s).__name__ for s, _ in model.steps]
    assert kinds == ["Dense", "fork", "Dense", "Dense", "join", "fork", "Dense", "join", "Dense"]
    tr = engine.forward(model, model.unflatten(w), problem.X)
    assert np.array_equal(tr.z, model.forward(w, problem.X))
    Z = engine.run_batched(model, lambda l: np.stack([model.unflatten(w)[l]] * 2),
                           *engine.prefix(model, problem.X))
    assert rel(Z[1], tr.z) < 1e-15


def test_unit_networks_have_one_forward():
    """forward (autograd), trace and the batched losses are one propagation."""
    net = cl.UnitNetwork(5, [(0, 2), (1, 2), (2, 3), (0, 3), (3, 4), (2, 4)], [0, 1], [4])
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((6, 2)), rng.standard_normal((6, 1))
    problem = cl.Problem(net, "mse", X, y)
    w = net.init(0) + 0.2 * rng.standard_normal(net.n_params)
    tr = units.trace(net, w, X)
    assert np.array_equal(tr.y[:, net.outputs], net.forward(w, X))
    Ws = w + 0.1 * rng.standard_normal((3, len(w)))
    assert rel(units.batch_losses(problem, Ws), [problem.loss(v) for v in Ws]) < 1e-14
    pt = problem.point(w)
    assert rel(pt.grad(), grad(problem.loss)(w)) < 1e-12
    with pytest.raises(TypeError, match="needs a layered model"):
        pt.sqrt_seeds


def test_to_torch_writes_the_new_layer_options_and_torch_order_maps_the_parameters():
    torch = pytest.importorskip("torch")
    model = cl.Sequential([cl.Conv1d(2, 3, 3, padding=1, activation="gelu", bias=False),
                           cl.Flatten(), cl.Dense(15, 4, "silu"), cl.Dense(4, 2, bias=False)],
                          (2, 5))
    w = model.init(0) + 0.1 * RNG.standard_normal(model.n_params)
    X = RNG.standard_normal((3, 2, 5))
    net = cl.to_torch(model, w)
    assert [type(m).__name__ for m in net] == ["Conv1d", "GELU", "Flatten", "Linear", "SiLU",
                                               "Linear"]
    out = net(torch.as_tensor(X)).detach().numpy()
    assert rel(out, model.forward(w, X)) < 1e-14
    order = cl.torch_bridge.torch_order(model)
    flat = torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
    assert np.array_equal(flat, w[order])
    fn = cl.Function(lambda theta, x: theta * x, shape=(2,))
    with pytest.raises(ValueError, match="no torch counterpart"):
        cl.to_torch(cl.Sequential([cl.Dense(2, 2), fn], (2,)), np.zeros(8))


@pytest.mark.parametrize("causal", [False, True])
def test_to_torch_writes_residual_attention_and_mean_pool_and_reads_them_back(causal):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    d, T, heads = 4, 3, 2
    model = cl.Sequential([cl.Dense(d, d, "gelu"),
                           cl.Residual([cl.LayerNorm(d), cl.SelfAttention(d, heads, causal)]),
                           cl.Residual([cl.Dense(d, 6, "relu"), cl.Dense(6, d)]),
                           cl.MeanPool(), cl.Dense(d, 2)], (T, d))
    w = model.init(0) + 0.3 * rng.standard_normal(model.n_params)
    X = rng.standard_normal((5, T, d))
    net = cl.to_torch(model, w).eval()
    out = net(torch.as_tensor(X)).detach().numpy()
    assert rel(out, model.forward(w, X)) < 1e-13
    # the attention module against attention written out (test_attention_layers)
    Ws = model.unflatten(w)
    attn = net[2].block[1]
    z = rng.standard_normal((5, T, d))
    mine = attn(torch.as_tensor(z)).detach().numpy()
    assert rel(mine, plain_attention(Ws[2], z, heads, causal, bias=True)) < 1e-13
    flat = torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
    assert np.array_equal(flat, w[cl.torch_order(model)])
    model2, w2 = cl.from_torch(net, (T, d))                             # and back
    buf = io.BytesIO()                                  # and the module pickles whole
    torch.save(net, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert type(again[2]).__name__ == "TorchResidual"
    assert np.array_equal(again(torch.as_tensor(X)).detach().numpy(), out)
    assert repr(model2) == repr(model)
    assert rel(model2.forward(w2, X), out) < 1e-13
    assert np.array_equal(w2[cl.torch_order(model2)], flat)
    # on a 1-D map (C, L) the mean is over L: torch's dim 2
    model = cl.Sequential([cl.Conv1d(2, 3, 3, padding=1, activation="tanh"), cl.MeanPool(),
                           cl.Dense(3, 2)], (2, 5))
    w, X = model.init(1), rng.standard_normal((5, 2, 5))
    net = cl.to_torch(model, w)
    assert net[-2].dim == 2
    assert rel(net(torch.as_tensor(X)).detach().numpy(), model.forward(w, X)) < 1e-13


def test_your_own_loss_sees_sequence_outputs_whole():
    problem, w, _ = make("next-token")

    def ce(z, y):                                      # z (N, T, K), y (N, T): summed per sample
        m = anp.max(z, axis=-1, keepdims=True)
        lse = anp.log(anp.sum(anp.exp(z - m), axis=-1)) + m[..., 0]
        return anp.sum(lse - anp.sum(z * np.eye(z.shape[-1])[y], axis=-1), axis=1)

    own = cl.Problem(problem.model, cl.Loss(ce), problem.X, problem.y)
    assert abs(own.loss(w) - problem.loss(w)) < 1e-14
    for f in (cl.hessian, cl.ggn, lambda p, v: cl.hvp(p, v, np.ones(len(v)))):
        assert rel(f(own, w), f(problem, w)) < 1e-12
