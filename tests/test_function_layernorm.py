"""cl.Function, a layer of the user's own, against a built-in layer: LayerNorm written as
fn(params, x) with autograd.numpy (params (2, d): γ then β, the built-in's flat layout) gives
the built-in cl.LayerNorm's numbers — forward, Hessian, GGN, hvp, KFLR (where both keep their
exact GGN block) — to 1e-12 in residual nets, on vectors and on sequences. The two share no
code: the built-in has hand-written rules, the Function's rules come from autograd. The
Hessians are also checked against autograd's `hessian` of a plain forward written here, and a
Function with another eps is told apart (the comparison can fail)."""

import autograd.numpy as anp
import autograd.scipy.special as aspecial
import numpy as np
import pytest
from autograd import hessian

import curvlab as cl

TOL = 1e-12


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def layer_norm_fn(eps=1e-5):
    """torch's LayerNorm over the last axis: (x − mean) / √(biased var + eps) · γ + β."""
    def layer_norm(params, x):
        mu = anp.mean(x, axis=-1, keepdims=True)
        var = anp.mean((x - mu) ** 2, axis=-1, keepdims=True)
        return (x - mu) / anp.sqrt(var + eps) * params[0] + params[1]
    return layer_norm


def norm(d, own, eps=1e-5):
    return cl.Function(layer_norm_fn(eps), (2, d), name="layer_norm") if own else cl.LayerNorm(d)


def residual_net(own, seq, eps=1e-5):
    """Dense, Residual([norm, Dense gelu, Dense]), norm, Dense head: on (N, 3) or (N, T, 3)."""
    layers = [cl.Dense(3, 4, "tanh"),
              cl.Residual([norm(4, own, eps), cl.Dense(4, 5, "gelu"), cl.Dense(5, 4)]),
              norm(4, own, eps), cl.Dense(4, 3)]
    return cl.Sequential(layers, input_shape=(2, 3) if seq else (3,))


def pair(seq, N=5, seed=0, eps=1e-5):
    """(built-in problem, Function problem, w): the same data, the same w."""
    rng = np.random.default_rng(seed)
    shape = (N, 2, 3) if seq else (N, 3)
    X = rng.standard_normal(shape)
    y = rng.integers(0, 3, shape[:-1])
    built, own = residual_net(False, seq), residual_net(True, seq, eps)
    assert own.n_params == built.n_params
    w = built.init(seed) + 0.3 * rng.standard_normal(built.n_params)   # γ away from 1, β from 0
    return cl.Problem(built, "cross_entropy", X, y), cl.Problem(own, "cross_entropy", X, y), w


def plain_loss(problem):
    """The residual net and its loss by hand, for autograd (layout: [W | b] rows, γ, β)."""
    X, y = problem.X, problem.y
    ln = layer_norm_fn()

    def loss(w):
        sizes = [4 * 4, 8, 5 * 5, 4 * 6, 8, 3 * 5]
        parts, o = [], 0
        for n in sizes:
            parts.append(w[o:o + n])
            o += n
        W1, n1, W2, W3, n2, W4 = parts
        W1, W2 = anp.reshape(W1, (4, 4)), anp.reshape(W2, (5, 5))
        W3, W4 = anp.reshape(W3, (4, 6)), anp.reshape(W4, (3, 5))
        gelu = lambda s: 0.5 * s * (1.0 + aspecial.erf(s / np.sqrt(2.0)))     # noqa: E731
        h = anp.tanh(anp.dot(X, W1[:, :3].T) + W1[:, 3])
        f = ln(anp.reshape(n1, (2, 4)), h)
        f = gelu(anp.dot(f, W2[:, :4].T) + W2[:, 4])
        h = h + anp.dot(f, W3[:, :5].T) + W3[:, 5]
        z = anp.dot(ln(anp.reshape(n2, (2, 4)), h), W4[:, :4].T) + W4[:, 4]
        m = anp.max(z, axis=-1, keepdims=True)
        logp = z - m - anp.log(anp.sum(anp.exp(z - m), axis=-1, keepdims=True))
        picked = anp.sum(logp * np.eye(3)[y], axis=-1)
        return -anp.sum(picked) / len(X)                   # a sample's loss sums its positions

    return loss


@pytest.mark.parametrize("seq", [False, True], ids=["vectors", "sequences"])
def test_function_layernorm_gives_the_builtins_numbers(seq):
    p_built, p_own, w = pair(seq)
    assert rel(p_own.outputs(w), p_built.outputs(w)) < TOL
    assert abs(p_own.loss(w) - p_built.loss(w)) < TOL * abs(p_built.loss(w))
    assert rel(p_own.grad(w), p_built.grad(w)) < TOL
    H_built, H_own = cl.hessian(p_built, w), cl.hessian(p_own, w)
    assert rel(H_own, H_built) < TOL
    assert rel(H_built, hessian(plain_loss(p_built))(w)) < 1e-10          # the independent oracle
    G_built, G_own = cl.ggn(p_built, w), cl.ggn(p_own, w)
    assert rel(G_own, G_built) < TOL
    assert rel(G_built, H_built) > 1e-3                                   # not a model linear in w
    V = np.random.default_rng(1).standard_normal((p_built.n_params, 2))
    assert rel(cl.hvp(p_own, w, V), H_built @ V) < TOL
    assert rel(cl.ggnvp(p_own, w, V), G_built @ V) < TOL


@pytest.mark.parametrize("seq", [False, True], ids=["vectors", "sequences"])
def test_kflr_keeps_both_layernorms_exact_ggn_blocks(seq):
    p_built, p_own, w = pair(seq)
    G = cl.ggn(p_built, w)
    slices = p_built.model.layer_slices()
    norms = [i for i, layer in enumerate(p_built.model.layers)
             if type(layer).__name__ == "LayerNorm"]
    assert len(norms) == 2 and slices == p_own.model.layer_slices()
    for flavor in ("expand", "reduce"):
        K_built = cl.kflr(p_built, w, flavor=flavor)
        K_own = cl.kflr(p_own, w, flavor=flavor)
        assert rel(K_own.to_dense(), K_built.to_dense()) < TOL
        for i in norms:                                   # both: the exact GGN block of the norm
            assert rel(K_own.blocks()[i], G[slices[i], slices[i]]) < TOL
            assert rel(K_built.blocks()[i], G[slices[i], slices[i]]) < TOL


def test_the_comparison_tells_another_eps_apart():
    p_built, p_own, w = pair(False, eps=1e-3)
    assert rel(p_own.outputs(w), p_built.outputs(w)) > 1e-6
    v = np.random.default_rng(2).standard_normal(p_built.n_params)
    assert rel(cl.hvp(p_own, w, v), cl.hvp(p_built, w, v)) > 1e-6
