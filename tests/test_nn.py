import autograd.numpy as anp
import numpy as np
import pytest
from autograd import elementwise_grad as egrad

import curvlab as cl
from curvlab.nn import ACTIVATIONS


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu", "softplus", "identity", "gelu",
                                  "silu"])
def test_activation_derivatives_match_autograd(name):
    act = ACTIVATIONS[name]
    x = np.linspace(-4, 4, 81) + 0.013          # avoid relu's kink at exactly 0
    assert np.allclose(act.df(x), egrad(act.f)(x), rtol=1e-12, atol=1e-14)
    assert np.allclose(act.d2f(x), egrad(egrad(act.f))(x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu", "softplus", "identity", "gelu",
                                  "silu"])
def test_in_place_activation_equals_f_bit_for_bit(name):
    act = ACTIVATIONS[name]
    x = np.linspace(-40, 40, 801).reshape(3, 267)
    buf = x.copy()
    out = act.f_inplace(buf)
    assert np.shares_memory(out, buf) and np.array_equal(out, act.f(x))


def test_sigmoid_and_softplus_do_not_overflow():
    x = np.array([-800.0, 800.0])
    assert np.all(np.isfinite(ACTIVATIONS["sigmoid"].f(x)))
    assert np.allclose(ACTIVATIONS["softplus"].f(x), [0.0, 800.0])


def test_flat_layout_is_row_major_weights_then_bias():
    model = cl.MLP([3, 2, 1], activation="identity")
    w = np.arange(model.n_params, dtype=float)
    W1 = model.unflatten(w)[0]
    # unit i of layer 1: weights w[4i:4i+3], bias w[4i+3]
    assert np.array_equal(W1, [[0, 1, 2, 3], [4, 5, 6, 7]])
    x = np.array([[1.0, -1.0, 2.0]])
    s1 = np.array([0 - 1 + 4 + 3, 4 - 5 + 12 + 7])
    z = s1 @ w[8:10] + w[10]
    assert np.allclose(model.forward(w, x), z)
    assert np.array_equal(model.flatten(model.unflatten(w)), w)
    assert model.n_params == 2 * 4 + 1 * 3


def test_last_layer_is_linear_and_hidden_use_the_activation():
    model = cl.MLP([2, 3, 3, 2], activation="relu")
    assert [l.act.name for l in model.layers] == ["relu", "relu", "identity"]


def test_init_is_seeded_float64_lecun():
    model = cl.MLP([50, 40, 3])
    w = model.init(seed=1)
    assert w.dtype == np.float64 and w.shape == (model.n_params,)
    assert np.array_equal(w, model.init(seed=1)) and not np.array_equal(w, model.init(seed=2))
    W1 = model.unflatten(w)[0]
    assert np.all(W1[:, -1] == 0) and abs(W1[:, :-1].std() - 1 / np.sqrt(50)) < 0.01


def test_forward_is_differentiable_with_autograd():
    from autograd import grad
    model = cl.MLP([2, 4, 1], activation="softplus")
    X = np.random.default_rng(0).standard_normal((5, 2))
    g = grad(lambda w: anp.sum(model.forward(w, X) ** 2))(model.init(0))
    assert g.shape == (model.n_params,) and np.any(g != 0)


def test_bad_models_are_refused():
    with pytest.raises(ValueError, match="unknown activation 'mish'"):    # gelu exists now
        cl.MLP([2, 3, 1], activation="mish")
    with pytest.raises(ValueError, match="at least"):
        cl.MLP([3])
    with pytest.raises(ValueError, match=">= 1"):
        cl.MLP([3, 0, 1])
