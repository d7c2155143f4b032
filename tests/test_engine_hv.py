"""One point, several H V products: the first backpropagates ∂ℓ/∂z inside its R-backward
(`engine.rbackward_fused`, nothing kept), the later ones reuse the kept backprop — every one
against autograd's Hessian of an independent plain forward."""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import hessian

import curvlab as cl


def _softmax_ce(z, y):
    z = z - anp.max(z, axis=1, keepdims=True)
    return anp.mean(anp.log(anp.sum(anp.exp(z), axis=1)) - z[anp.arange(len(y)), y])


def _plain_loss(model, X, y, act):
    """Dense(3, 4, act) -> Residual([Dense(4, 4, act)]) -> Dense(4, 2), written out."""
    def loss(w):
        W1, W2, W3 = model.unflatten(w)
        a1 = act(anp.dot(X, W1[:, :-1].T) + W1[:, -1])
        a2 = a1 + act(anp.dot(a1, W2[:, :-1].T) + W2[:, -1])
        return _softmax_ce(anp.dot(a2, W3[:, :-1].T) + W3[:, -1], y)
    return loss


@pytest.mark.parametrize("name, act", [("tanh", anp.tanh),
                                       ("sigmoid", lambda x: 0.5 * (anp.tanh(0.5 * x) + 1))])
def test_first_and_later_products_at_one_point_match_autograd(name, act):
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    model = cl.Sequential([cl.Dense(3, 4, name), cl.Residual([cl.Dense(4, 4, name)]),
                           cl.Dense(4, 2)], (3,))
    problem = cl.Problem(model, "cross_entropy", X, y, l2=0.05)
    w = model.init(1) + 0.3 * rng.standard_normal(model.n_params)
    H = hessian(_plain_loss(model, X, y, act))(w) + 0.05 * np.eye(model.n_params)
    pt = problem.point(w)
    for Q in (1, 3, 2):                     # fused, then the kept backprop (made, reused)
        V = rng.standard_normal((model.n_params, Q))
        HV = pt.hv(V)
        assert np.abs(HV - H @ V).max() < 1e-12 * np.abs(H @ V).max()
    assert "backprop" in pt._cache
