"""Embedding and SelfAttention against independent oracles: a plain forward written here from
the layers' settings alone (one-hot products for the Embedding, a loop over heads with a
multiplicative mask for attention — nothing of curvlab's layers, engine or losses), autograd's
generic `hessian` / `jacobian` on it, torch's nn.Embedding / nn.MultiheadAttention with the
weights copied, and identities that must hold exactly."""

import autograd.numpy as anp
import autograd.scipy.special as aspecial
import numpy as np
import pytest
from autograd import grad, hessian, jacobian

import curvlab as cl

TOL = 1e-10
V, D = 5, 4


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# -- the plain forward ---------------------------------------------------------------------------

ACT = {"tanh": anp.tanh, "identity": lambda s: s,
       "gelu": lambda s: 0.5 * s * (1.0 + aspecial.erf(s / np.sqrt(2.0)))}


def take(w, o, shape):
    n = int(np.prod(shape))
    return anp.reshape(w[o:o + n], shape), o + n


def plain_attention(theta, x, heads, causal, bias):
    """torch's multi-head self-attention: per head h, softmax(q_h k_hᵀ / √d_h) v_h, heads
    concatenated, then the output projection; the causal mask multiplies the exponentials."""
    d = x.shape[-1]
    dh = d // heads

    def lin(j, a):
        return anp.dot(a, theta[j, :, :d].T) + (theta[j, :, d] if bias else 0.0)

    q, k, v = lin(0, x), lin(1, x), lin(2, x)
    T = x.shape[1]
    keep = np.tril(np.ones((T, T))) if causal else np.ones((T, T))
    outs = []
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        S = anp.einsum("ntc,nsc->nts", q[:, :, sl], k[:, :, sl]) / np.sqrt(dh)
        E = anp.exp(S - anp.max(S, axis=2, keepdims=True)) * keep
        A = E / anp.sum(E, axis=2, keepdims=True)
        outs.append(anp.einsum("nts,nsc->ntc", A, v[:, :, sl]))
    return lin(3, anp.concatenate(outs, axis=2))


def plain_forward(modules, w, x, o=0):
    """(outputs, next offset), layer by layer from the settings."""
    for mod in modules:
        kind = type(mod).__name__
        if kind == "Embedding":
            E, o = take(w, o, (mod.V, mod.d))
            x = anp.dot(np.eye(mod.V)[x], E)                        # one-hot rows times the table
        elif kind == "SelfAttention":
            theta, o = take(w, o, (4, mod.d, mod.d + mod.bias))
            x = plain_attention(theta, x, mod.heads, mod.causal, mod.bias)
        elif kind == "Dense":
            Wb, o = take(w, o, (mod.n_out, mod.n_in + mod.bias))
            s = anp.dot(x, Wb[:, :mod.n_in].T) + (Wb[:, -1] if mod.bias else 0.0)
            x = ACT[mod.act.name](s)
        elif kind == "LayerNorm":
            gb, o = take(w, o, (2, x.shape[-1]))
            mu = anp.mean(x, axis=-1, keepdims=True)
            var = anp.mean((x - mu) ** 2, axis=-1, keepdims=True)
            x = gb[0] * (x - mu) / anp.sqrt(var + mod.eps) + gb[1]
        elif kind == "Residual":
            f, o = plain_forward(mod.layers, w, x, o)
            x = x + f
        elif kind == "MeanPool":
            x = anp.mean(x, axis=1)
        else:
            raise TypeError(kind)
    return x, o


def plain_losses(loss, z, y):
    """Per-sample losses; a loss at every position sums over the positions."""
    if loss == "cross_entropy":
        m = anp.max(z, axis=-1, keepdims=True)
        lse = anp.log(anp.sum(anp.exp(z - m), axis=-1)) + m[..., 0]
        per = lse - anp.sum(z * np.eye(z.shape[-1])[y], axis=-1)
    else:
        per = 0.5 * anp.sum((z - y) ** 2, axis=-1)
    return anp.sum(per, axis=1) if z.ndim == 3 else per


class Oracle:
    def __init__(self, problem, loss, X, y):
        self.p, self.loss, self.X, self.y = problem, loss, X, y

    def z(self, w):
        return plain_forward(self.p.model.modules, w, self.X)[0]

    def per(self, w):
        return plain_losses(self.loss, self.z(w), self.y)

    def L(self, w):
        return anp.mean(self.per(w)) + 0.5 * self.p.l2 * anp.sum(w * w)

    def J(self, w):
        N = len(self.X)
        return jacobian(lambda v: anp.reshape(self.z(v), (N, -1)))(w)          # (N, K, P)

    def GGN(self, w):
        z = np.asarray(self.z(w))
        N = len(z)
        B = np.stack([hessian(lambda v: plain_losses(self.loss, anp.reshape(v, (1,) + z.shape[1:]),
                                                      self.y[n:n + 1])[0])(z[n].ravel())
                      for n in range(N)])
        J = self.J(w)
        return np.einsum("nkp,nkj,njq->pq", J, B, J) / N + self.p.l2 * np.eye(J.shape[2])


# -- the models: tokens (T = 3..4, d = 4, V = 5) and float sequences ---------------------------

def models():
    return {
        # the DESIGN example without its norms: a loss at every position
        "next-token": ([cl.Embedding(V, D),
                        cl.Residual([cl.SelfAttention(D, heads=2, causal=True)]),
                        cl.Residual([cl.Dense(D, 6, "gelu"), cl.Dense(6, D)]),
                        cl.Dense(D, V)], (4,), "cross_entropy"),
        # one head, no bias, mean over positions, then one loss per sequence
        "meanpool": ([cl.Embedding(V, D), cl.SelfAttention(D, heads=1, bias=False),
                      cl.Dense(D, D, "tanh"), cl.MeanPool(), cl.Dense(D, 3)],
                     (3,), "cross_entropy"),
        # attention first (no input tangent), then a second one behind a skip
        "float-inputs": ([cl.SelfAttention(D, heads=1, causal=True),
                          cl.Residual([cl.SelfAttention(D, heads=2, bias=False)]),
                          cl.Dense(D, 2)], (3, D), "mse"),
    }


MODELS = models()


def make(name, N=3, l2=0.0, seed=0):
    return make_from(*MODELS[name], N=N, l2=l2, seed=seed)


def make_from(mods, shape, loss, N=3, l2=0.0, seed=0):
    """(problem, w, its oracle) for the modules on random token ids (a (T,) input, V tokens) or
    features, random targets."""
    model = cl.Sequential(mods, input_shape=shape)
    rng = np.random.default_rng(seed)
    X = rng.integers(0, V, (N,) + shape) if len(shape) == 1 else rng.standard_normal((N,) + shape)
    out = model.out_shape
    y = (rng.integers(0, out[-1], (N,) + out[:-1]) if loss == "cross_entropy"
         else rng.standard_normal((N,) + out))
    problem = cl.Problem(model, loss, X, y, l2=l2)
    w = model.init(seed) + 0.5 * rng.standard_normal(model.n_params)
    return problem, w, Oracle(problem, loss, X, y)


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_gradient_and_dense_matrices_match_autograd(name, record_error):
    problem, w, o = make(name, l2=0.01)
    assert rel(problem.outputs(w), o.z(w)) < 1e-13
    assert abs(problem.loss(w) - o.L(w)) < 1e-12 * abs(o.L(w))
    assert record_error(rel(problem.grad(w), grad(o.L)(w))) < TOL
    H, G = hessian(o.L)(w), o.GGN(w)
    assert record_error(rel(cl.hessian(problem, w), H)) < TOL
    assert record_error(rel(cl.ggn(problem, w), G)) < TOL
    assert record_error(rel(cl.fisher(problem, w), G)) < TOL            # = GGN for these losses
    for Hb, Gb, sl in zip(cl.hessian_blocks(problem, w), cl.ggn_blocks(problem, w),
                          problem.model.layer_slices()):
        assert record_error(rel(Hb, H[sl, sl])) < TOL
        assert record_error(rel(Gb, G[sl, sl])) < TOL
    assert record_error(rel(cl.diag_ggn(problem, w), np.diag(G))) < TOL
    assert record_error(rel(cl.diag_hessian(problem, w), np.diag(H))) < TOL


@pytest.mark.parametrize("name", list(MODELS))
def test_products_and_per_sample_quantities_match_autograd(name, record_error):
    problem, w, o = make(name, l2=0.01)
    P, N = problem.n_params, problem.N
    Vs = np.random.default_rng(1).standard_normal((P, 2))
    H, G = hessian(o.L)(w), o.GGN(w)
    assert record_error(rel(cl.hvp(problem, w, Vs), H @ Vs)) < TOL
    for method in ("rop", "jacobian"):
        assert record_error(rel(cl.ggnvp(problem, w, Vs, method=method), G @ Vs)) < TOL
    J = o.J(w)
    out = (N,) + problem.out_shape
    assert record_error(rel(cl.jvp(problem, w, Vs[:, 0]), (J @ Vs[:, 0]).reshape(out))) < TOL
    assert record_error(rel(cl.ntk(problem, w), J.reshape(-1, P) @ J.reshape(-1, P).T)) < TOL
    S = cl.sqrt_ggn(problem, w)
    assert record_error(rel(S @ S.T, G - 0.01 * np.eye(P))) < TOL
    g_n = jacobian(o.per)(w)
    assert record_error(rel(cl.per_sample_grads(problem, w), g_n)) < TOL
    assert record_error(rel(cl.fisher(problem, w, "empirical"),
                            g_n.T @ g_n / N + 0.01 * np.eye(P))) < TOL


@pytest.mark.parametrize("name", ["next-token", "float-inputs"])
def test_landscapes_walk_the_new_layers_at_many_points(name):
    problem, w, o = make(name)
    d1 = cl.landscape.direction(problem, w, "filter", seed=1)
    d2 = cl.landscape.direction(problem, w, "random", seed=2)
    Z = cl.landscape.grid(problem, w, d1, d2, span=0.5, n=3)
    a = np.linspace(-0.5, 0.5, 3)
    assert rel(Z, [[o.L(w + ai * d1 + aj * d2) for aj in a] for ai in a]) < 1e-12


def test_finite_differences_of_the_gradient_and_hvp():
    problem, w, _ = make("next-token")
    v = np.random.default_rng(2).standard_normal(problem.n_params)
    v /= np.linalg.norm(v)
    fd = (problem.loss(w + 1e-5 * v) - problem.loss(w - 1e-5 * v)) / 2e-5
    assert abs(problem.grad(w) @ v - fd) < 1e-8 * max(1.0, abs(fd))
    assert rel(cl.fd_hvp(problem, w, v, r=1e-4), cl.hvp(problem, w, v)) < 1e-6


@pytest.mark.parametrize("heads,causal,bias", [(1, False, True), (2, True, True),
                                               (2, False, False)])
def test_forward_equals_torch_embedding_and_multihead_attention(heads, causal, bias):
    torch = pytest.importorskip("torch")
    T, N = 4, 3
    model = cl.Sequential([cl.Embedding(V, D), cl.SelfAttention(D, heads, causal, bias)], (T,))
    rng = np.random.default_rng(3)
    w = model.init(0) + 0.5 * rng.standard_normal(model.n_params)
    E, th = model.unflatten(w)
    X = rng.integers(0, V, (N, T))
    emb = torch.nn.Embedding(V, D, dtype=torch.float64)
    mha = torch.nn.MultiheadAttention(D, heads, bias=bias, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        emb.weight.copy_(torch.as_tensor(E))
        mha.in_proj_weight.copy_(torch.as_tensor(th[:3, :, :D].reshape(3 * D, D)))
        mha.out_proj.weight.copy_(torch.as_tensor(th[3, :, :D]))
        if bias:
            mha.in_proj_bias.copy_(torch.as_tensor(th[:3, :, D].ravel()))
            mha.out_proj.bias.copy_(torch.as_tensor(th[3, :, D]))
        x = emb(torch.as_tensor(X))
        mask = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
        y = mha(x, x, x, need_weights=False, attn_mask=mask if causal else None,
                is_causal=causal)[0]
    assert rel(model.forward(w, X), y.numpy()) < 1e-13


# -- identities --------------------------------------------------------------------------------

def test_ggn_equals_hessian_when_the_model_is_linear_in_its_parameters():
    model = cl.Sequential([cl.Embedding(V, 3), cl.MeanPool()], (4,))       # mean of table rows
    rng = np.random.default_rng(4)
    problem = cl.Problem(model, "cross_entropy", rng.integers(0, V, (5, 4)), rng.integers(0, 3, 5))
    w = model.init(0)
    H = cl.hessian(problem, w)
    assert rel(cl.ggn(problem, w), H) < 1e-12
    assert rel(H, hessian(problem.loss)(w)) < TOL


def test_an_attention_with_a_zero_output_block_behind_a_skip_is_the_identity():
    rng = np.random.default_rng(5)
    skip = cl.Sequential([cl.Embedding(V, D), cl.Residual([cl.SelfAttention(D, 2)]),
                          cl.Dense(D, V)], (3,))
    plain = cl.Sequential([cl.Embedding(V, D), cl.Dense(D, V)], (3,))
    X, y = rng.integers(0, V, (4, 3)), rng.integers(0, V, (4, 3))
    p1, p0 = cl.Problem(skip, "cross_entropy", X, y), cl.Problem(plain, "cross_entropy", X, y)
    w0 = plain.init(0)
    att = rng.standard_normal((4, D, D + 1))
    att[3] = 0.0                                                         # W_O = 0, b_O = 0
    w1 = np.concatenate([w0[:V * D], att.ravel(), w0[V * D:]])
    keep = np.r_[0:V * D, V * D + att.size:len(w1)]
    assert np.array_equal(p1.outputs(w1), p0.outputs(w0))
    assert rel(cl.hessian(p1, w1)[np.ix_(keep, keep)], cl.hessian(p0, w0)) < 1e-13


def test_one_loss_per_sequence_after_mean_pool_and_the_layout():
    problem, w, o = make("meanpool")
    E, att, _, _ = problem.model.unflatten(w)
    assert att.shape == (4, D, D) and E.shape == (V, D)                  # bias=False: W alone
    assert problem.outputs(w).shape == (3, 3)
    X = problem.X
    assert rel(problem.model.forward(w, X[:1]), problem.outputs(w)[:1]) < 1e-14   # per sample
    rows = cl.per_sample_grads(problem, w)
    assert np.all(rows[:, :V * D].reshape(3, V, D)[0, np.setdiff1d(np.arange(V), X[0])] == 0)


# -- what is refused, by name ------------------------------------------------------------------

@pytest.mark.parametrize("name,layer", [("next-token", r"Embedding\(5, 4\)"),
                                        ("float-inputs", r"SelfAttention\(4, heads=1, causal")])
def test_chain_kinds_refuse_the_new_layers_by_name(name, layer):
    problem, w, _ = make(name)
    for kind in ("kfra", "kfoc", "tnt", "shampoo"):             # the K-FAC family builds
        with pytest.raises(ValueError, match=layer):
            cl.matrix(problem, w, kind)


def test_construction_and_input_errors_name_the_problem():
    seq = [cl.Embedding(V, D), cl.Dense(D, V)]
    model = cl.Sequential(seq, (3,))
    y = np.zeros((2, 3), int)
    with pytest.raises(ValueError, match=r"reads integer token ids, but X has dtype float64; "
                                         r"pass them as integers"):
        cl.Problem(model, "cross_entropy", np.zeros((2, 3)), y)
    with pytest.raises(ValueError, match=r"token ids out of range: X holds 0\.\.5.*ids 0\.\.4"):
        cl.Problem(model, "cross_entropy", np.array([[0, 1, 5], [0, 0, 0]]), y)
    with pytest.raises(ValueError, match=r"token ids out of range: X holds -1\.\.2"):
        model.forward(model.init(0), np.array([[0, -1, 2]]))        # numpy would wrap -1 around
    with pytest.raises(ValueError, match=r"token ids of shape \(N, 3\)"):
        cl.Problem(model, "cross_entropy", np.zeros((2, 4), int), y)
    with pytest.raises(ValueError, match="must be the model's first layer"):
        cl.Sequential([cl.Dense(D, D), cl.Embedding(V, D)], (D,))
    with pytest.raises(ValueError, match=r"input_shape=\(T,\)"):
        cl.Sequential(seq, (3, 2))
    with pytest.raises(ValueError, match="d must be a positive multiple of heads"):
        cl.SelfAttention(6, heads=4)
    with pytest.raises(ValueError, match=r"needs a sequence \(T, d\)"):
        cl.Sequential([cl.SelfAttention(4), cl.Dense(4, 2)], (4,))
    with pytest.raises(ValueError, match="expects 4 features per position but gets 3"):
        cl.Sequential([cl.SelfAttention(4), cl.Dense(4, 2)], (2, 3))


def test_the_design_example_with_layer_norms():
    if not hasattr(cl, "LayerNorm"):
        pytest.skip("cl.LayerNorm is not there yet")
    T, d = 3, 4
    model = cl.Sequential([
        cl.Embedding(V, d),
        cl.Residual([cl.LayerNorm(d), cl.SelfAttention(d, heads=2, causal=True)]),
        cl.Residual([cl.LayerNorm(d), cl.Dense(d, 4 * d, activation="gelu"), cl.Dense(4 * d, d)]),
        cl.LayerNorm(d),
        cl.Dense(d, V)], input_shape=(T,))
    rng = np.random.default_rng(6)
    X, y = rng.integers(0, V, (2, T)), rng.integers(0, V, (2, T))
    problem = cl.Problem(model, "cross_entropy", X, y)
    w = model.init(0) + 0.3 * rng.standard_normal(model.n_params)
    o = Oracle(problem, "cross_entropy", X, y)
    assert problem.outputs(w).shape == (2, T, V)
    assert rel(problem.outputs(w), o.z(w)) < 1e-13
    # the dense Hessian against autograd's Hessian-vector products along random directions
    # (autograd's whole Hessian of this net takes seconds)
    Vs = rng.standard_normal((model.n_params, 6))
    hvp = grad(lambda v, u: anp.dot(grad(o.L)(v), u))
    assert rel(cl.hessian(problem, w) @ Vs, np.stack([hvp(w, u) for u in Vs.T], 1)) < TOL
    assert rel(cl.ggn(problem, w), o.GGN(w)) < TOL
