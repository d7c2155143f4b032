import numpy as np
import pytest
from autograd import grad, hessian

from curvlab.losses import Loss, get_loss
from tests.conftest import targets

LOSSES = ["mse", "cross_entropy", "bce"]


def _setup(name, N=5, K=3, seed=0):
    rng = np.random.default_rng(seed)
    loss = get_loss(name)
    z = 2 * rng.standard_normal((N, K))
    y = loss.targets(targets(name, N, K, rng), N, K)
    return loss, z, y


@pytest.mark.parametrize("name", LOSSES)
def test_derivatives_match_autograd(name):
    loss, z, y = _setup(name)
    for n in range(len(z)):
        f = lambda zn: loss.value(zn[None], y[n:n + 1])[0]
        assert np.allclose(loss.dz(z[n:n + 1], y[n:n + 1])[0], grad(f)(z[n]), rtol=1e-12, atol=1e-14)
        assert np.allclose(loss.hessian(z, y)[n], hessian(f)(z[n]), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_sqrt_hessian_factors_b(name):
    loss, z, y = _setup(name)
    C = loss.sqrt_hessian(z, y)
    B = np.stack([hessian(lambda zn: loss.value(zn[None], y[n:n + 1])[0])(z[n]) for n in range(len(z))])
    assert np.allclose(np.einsum("nkr,njr->nkj", C, C), B, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_hessian_product_applies_b_to_a_block_of_directions(name):
    loss, z, y = _setup(name)
    U = np.random.default_rng(3).standard_normal((4,) + z.shape)          # (Q, N, K)
    B = np.stack([hessian(lambda zn: loss.value(zn[None], y[n:n + 1])[0])(z[n]) for n in range(len(z))])
    assert np.allclose(loss.hessian_product(z, y, U), np.einsum("nkj,qnj->qnk", B, U),
                       rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_fisher_factor_is_the_covariance_of_sampled_gradients(name):
    loss, z, _ = _setup(name, N=3)
    F = loss.fisher_factor(z)
    ys = loss.sample(z, np.random.default_rng(1), 200000)
    r = loss.dz(z[None], ys)                              # (S, N, K)
    mc = np.einsum("snk,snj->nkj", r, r) / len(r)
    assert np.allclose(np.einsum("nkr,njr->nkj", F, F), mc, atol=0.01)


def test_cross_entropy_sampling_frequencies():
    loss = get_loss("cross_entropy")
    z = np.array([[0.0, 1.0, -1.0]])
    p = np.exp(z[0]) / np.exp(z[0]).sum()
    ys = loss.sample(z, np.random.default_rng(0), 100000)[:, 0]
    assert np.allclose(np.bincount(ys, minlength=3) / len(ys), p, atol=0.005)


def test_cross_entropy_is_stable_for_large_logits():
    loss = get_loss("cross_entropy")
    z = np.array([[1000.0, 0.0, -1000.0]])
    assert np.allclose(loss.value(z, np.array([1])), [1000.0])
    assert np.all(np.isfinite(loss.hessian(z, np.array([1]))))


def test_target_validation():
    ce, bce, mse = get_loss("cross_entropy"), get_loss("bce"), get_loss("mse")
    with pytest.raises(ValueError, match="labels out of range"):
        ce.targets(np.array([0, 3]), 2, 3)
    with pytest.raises(ValueError, match="out of range"):
        ce.targets(np.array([-1, 0]), 2, 3)
    with pytest.raises(ValueError, match="integers"):
        ce.targets(np.array([0.5, 1.0]), 2, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bce.targets(np.array([[2.0], [0.0]]), 2, 1)
    with pytest.raises(ValueError, match="shape"):
        mse.targets(np.zeros((2, 3)), 2, 2)
    with pytest.raises(ValueError, match="NaN"):
        mse.targets(np.array([[np.nan, 0.0]]), 1, 2)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        get_loss("hinge")


@pytest.mark.parametrize("name", LOSSES)
def test_mean_hessian_is_the_average_of_b(name):
    loss, z, y = _setup(name, N=7)
    assert np.allclose(loss.mean_hessian(z, y), loss.hessian(z, y).mean(0), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", LOSSES)
def test_mean_values_over_outputs_laid_out_by_column(name):
    loss, z, y = _setup(name, N=6, K=3)
    zs = z + np.random.default_rng(4).standard_normal((5,) + z.shape)     # G = 5 sets of outputs
    want = [loss.value(zg, y).mean() for zg in zs]
    zt = np.ascontiguousarray(zs.transpose(0, 2, 1))
    assert np.allclose(loss.mean_values(zt.copy(), y), want, rtol=1e-14)
    assert np.allclose(Loss.mean_values(loss, zt.copy(), y), want, rtol=1e-14)   # the generic route
