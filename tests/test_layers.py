"""Each layer kind's rules against each other: the adjoint is the transpose of the tangent map
(⟨push x, y⟩ = ⟨x, pull y⟩), the tangent map is the derivative of the forward map, and KFRA's
expected sandwich is the average of the per-sample Jᵀ M J."""

import numpy as np
import pytest
from autograd import jacobian

import curvlab as cl

RNG = np.random.default_rng(0)


PARAMETER_FREE = [(cl.MaxPool2d(2), (4, 6, 3)), (cl.MaxPool2d((1, 3)), (2, 6, 2)), (cl.AvgPool2d(2), (4, 4, 2)),
                  (cl.AvgPool2d((2, 3)), (4, 6, 1)), (cl.Flatten(), (3, 2, 4))]


@pytest.mark.parametrize("mod,in_shape", PARAMETER_FREE, ids=lambda v: repr(v))
def test_parameter_free_layers_push_pull_and_forward_agree(mod, in_shape):
    mod.build(in_shape)
    x = RNG.standard_normal((3,) + in_shape)                    # N = 3, no ties
    y, state = mod.forward(x)
    assert np.allclose(y, mod.apply(x), rtol=0, atol=0)
    # linear given the state: push reproduces the forward, and is its derivative
    assert np.array_equal(mod.push(state, x), y)
    J = jacobian(mod.apply)(x).reshape(y.size, x.size)
    dx = RNG.standard_normal((2,) + x.shape)                     # Q = 2 directions
    assert np.allclose(mod.push(state, dx).reshape(2, -1), dx.reshape(2, -1) @ J.T, atol=1e-14)
    dy = RNG.standard_normal((2,) + y.shape)
    assert np.allclose(mod.pull(state, dy).reshape(2, -1), dy.reshape(2, -1) @ J, atol=1e-14)


@pytest.mark.parametrize("mod,in_shape", PARAMETER_FREE, ids=lambda v: repr(v))
def test_expected_sandwich_is_the_average_of_per_sample_sandwiches(mod, in_shape):
    mod.build(in_shape)
    x = RNG.standard_normal((4,) + in_shape)
    y, state = mod.forward(x)
    D = y[0].size
    M = RNG.standard_normal((D, D))
    M = M + M.T
    Js = [jacobian(mod.apply)(x[n:n + 1]).reshape(D, -1) for n in range(4)]
    want = np.mean([J.T @ M @ J for J in Js], 0)
    assert np.allclose(mod.expected_sandwich(state, M), want, atol=1e-13)


@pytest.mark.parametrize("conv", [cl.Conv2d(2, 3, 3, padding=1), cl.Conv2d(2, 1, (2, 3), stride=(2, 1), padding=(0, 2)),
                                  cl.Conv2d(1, 2, 4, stride=3)], ids=repr)
def test_conv_patches_adjoint_is_the_transpose(conv):
    model = cl.Sequential([conv, cl.Flatten()], input_shape=(conv.c_in, 7, 6))
    layer = model.layers[0]
    x = RNG.standard_normal((2,) + layer.in_shape)
    P = layer.patches(x)
    assert P.shape == (2, layer.T, layer.n_in)
    J = jacobian(layer.patches)(x).reshape(P.size, x.size)
    g = RNG.standard_normal(P.shape)
    assert np.allclose(layer.patches_T(g).ravel(), g.ravel() @ J, atol=1e-14)


def test_conv_patch_order_is_torchs_weight_order():
    # Column j of a patch is input (c, i, j) at kernel offset (i, j), ordered (c_in, kh, kw).
    model = cl.Sequential([cl.Conv2d(2, 1, 2), cl.Flatten()], input_shape=(2, 3, 3))
    layer = model.layers[0]
    X = np.arange(18.0).reshape(1, 2, 3, 3)                      # NCHW
    P = layer.patches(model.prepare(X))[0]
    t = 1 * 2 + 1                                                 # output location (1, 1)
    assert np.array_equal(P[t], X[0, :, 1:3, 1:3].ravel())


def test_flatten_orders_features_like_torch():
    model = cl.Sequential([cl.Flatten(), cl.Dense(12, 1)], input_shape=(3, 2, 2))
    w = np.zeros(model.n_params)
    w[:12] = np.arange(12.0)
    X = RNG.standard_normal((1, 3, 2, 2))
    assert np.isclose(model.forward(w, X)[0, 0], X.ravel() @ np.arange(12.0))


def test_max_pool_mask_picks_the_first_maximum_row_major():
    pool = cl.MaxPool2d(2)
    pool.build((2, 2, 1))
    x = np.array([[[[1.0], [3.0]], [[3.0], [3.0]]]])            # (N, H, W, C): three tied maxima
    y, sel = pool.forward(x)
    assert y.ravel()[0] == 3.0 and np.array_equal(pool.mask(sel).ravel(), [0, 1, 0, 0])
    assert np.array_equal(pool.pull(sel, np.ones((1, 1, 1, 1))).ravel(), [0, 1, 0, 0])
