"""The Laplace approximation: every number against an independent reference — dense Λ built
from autograd's Jacobians and output Hessians (tests/oracles.py), a Gaussian process, Bayesian
linear regression's closed-form evidence, Botev's GGN blocks — and against laplace-torch itself
after the mapping stated in curvlab/laplace.py."""

import importlib.metadata
import os
import sys

import numpy as np
import pytest
import scipy.stats
from autograd import jacobian

import curvlab as cl
from curvlab.curvature.base import BlockDiagonal, Curvature
from curvlab.curvature.kfac import KroneckerFactored
from curvlab.curvature.registry import register, unregister
from curvlab.influence import _retrain
from curvlab.laplace import Laplace, laplace
from tests import oracles
from tests.conftest import make_problem
from tests.curvature.test_conv import make_conv_problem

TOL = 1e-9


def data_problem(problem):
    """The same problem without its L2 term: C is the kind's matrix of the data term."""
    return cl.Problem(problem.model, problem.lossfn, problem.X, problem.y)


def reference(problem, w, C, delta, sigma=None, X_test=None):
    """(log marginal likelihood, functional variance) from a dense C (P, P) of the data term,
    written out from the definitions with autograd's Jacobians."""
    N, P, K = problem.N, len(w), problem.n_outputs
    z = np.asarray(problem.model.forward(w, problem.X))
    if sigma is None:
        s, loglik = N, -np.sum(problem.lossfn.value(z, problem.y))
    else:
        s = N / sigma**2
        loglik = (-0.5 * N * K * np.log(2 * np.pi * sigma**2)
                  - np.sum((z - problem.y) ** 2) / (2 * sigma**2))
    Lam = s * C + delta * np.eye(P)
    lml = (loglik - 0.5 * delta * w @ w + 0.5 * P * np.log(delta)
           - 0.5 * np.linalg.slogdet(Lam)[1])
    if X_test is None:
        return lml, None
    J = np.asarray(jacobian(lambda v: problem.model.forward(v, X_test))(w))   # (M, K, P)
    return lml, np.einsum("mkp,pq,mlq->mkl", J, np.linalg.inv(Lam), J)


def test_exact_ggn_against_autograd_every_loss():
    rng = np.random.default_rng(0)
    for loss, sigma in [("mse", 0.6), ("cross_entropy", None), ("bce", None)]:
        problem, w = make_problem([3, 4, 3], "tanh", loss, 9, seed=1, l2=0.02)
        Xt = rng.standard_normal((5, 3))
        la = laplace(problem, w, "ggn", sigma_noise=sigma)
        delta = problem.N * problem.l2 / (sigma**2 if sigma else 1)
        assert la.prior_precision == pytest.approx(delta, rel=1e-15)
        lml, var = reference(problem, w, oracles.GGN(data_problem(problem), w), delta, sigma, Xt)
        mean, v = la.predictive(Xt)
        assert abs(la.log_marginal_likelihood() - lml) < TOL * max(1, abs(lml))
        np.testing.assert_allclose(v, var, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(mean, problem.model.forward(w, Xt), atol=1e-14)


KINDS = ["ggn", "hessian", "fisher", "kflr", "kfra", "kfac", "shampoo", "diagonal",
         "diag_hessian", "ekfac", "unitwise"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_structure_against_its_dense_matrix(kind):
    """Λ = N·C + δI held by structure (Cholesky, Kronecker eigenbases, diagonal, block eigh)
    gives the log det, J Λ⁻¹ Jᵀ, Λ itself and its solves of the dense C."""
    problem, w = make_problem([3, 5, 2], "tanh", "cross_entropy", 12, seed=3)
    Xt = np.random.default_rng(1).standard_normal((4, 3))
    delta = 30.0 if kind in ("hessian", "diag_hessian") else 0.7
    la = laplace(problem, w, kind, prior_precision=delta)
    assert la.structure == cl.curvature.registry.get(kind).structure
    C = cl.matrix(problem, w, kind).to_dense()
    lml, var = reference(problem, w, C, delta, None, Xt)
    assert abs(la.log_marginal_likelihood() - lml) < TOL * abs(lml)
    np.testing.assert_allclose(la.predictive(Xt)[1], var, rtol=1e-8, atol=1e-12)
    Lam = problem.N * C + delta * np.eye(len(w))
    prec = la.posterior_precision
    assert isinstance(prec, Curvature)
    np.testing.assert_allclose(prec.to_dense(), Lam, rtol=1e-12, atol=1e-12)
    v = np.random.default_rng(2).standard_normal(len(w))
    np.testing.assert_allclose(prec.solve(v), np.linalg.solve(Lam, v), rtol=1e-9, atol=1e-12)
    # the array form (from C's eigenvalues) agrees with the Cholesky / per-structure one
    grid = np.array([delta, 2 * delta])
    lmls = la.log_marginal_likelihood(grid)
    assert lmls.shape == (2,)
    assert abs(lmls[0] - lml) < TOL * abs(lml)
    assert abs(lmls[1] - reference(problem, w, C, 2 * delta)[0]) < TOL * abs(lml)


@pytest.mark.parametrize("kind", ["ggn", "kflr", "diagonal", "ekfac"])
def test_conv_net_and_models_without_layers(kind):
    """Layers shared over locations (their Jacobian rows are sums over locations, no rank-one
    shortcut), and a UnitNetwork (explicit Jacobian rows by autograd)."""
    problem, w = make_conv_problem([cl.Conv2d(1, 2, 3, padding=1, activation="tanh"),
                                    cl.MaxPool2d(2), cl.Flatten(), cl.Dense(8, 3)],
                                   (1, 4, 4), "cross_entropy", 5, seed=16)
    Xt = np.random.default_rng(7).standard_normal((3, 1, 4, 4))
    la = laplace(problem, w, kind, prior_precision=0.9)
    lml, var = reference(problem, w, cl.matrix(problem, w, kind).to_dense(), 0.9, None, Xt)
    assert abs(la.log_marginal_likelihood() - lml) < TOL * abs(lml)
    np.testing.assert_allclose(la.predictive(Xt)[1], var, rtol=1e-8, atol=1e-12)
    if kind == "ggn":
        unit = cl.UnitNetwork(6, [(0, 2), (1, 2), (0, 3), (2, 3), (2, 4), (3, 5), (2, 5)],
                              inputs=[0, 1], outputs=[4, 5])
        rng = np.random.default_rng(8)
        up = cl.Problem(unit, "mse", rng.standard_normal((7, 2)), rng.standard_normal((7, 2)))
        wu, Xu = unit.init(0), rng.standard_normal((3, 2))
        la = laplace(up, wu, "ggn", prior_precision=0.5, sigma_noise=0.8)
        lml, var = reference(up, wu, cl.ggn(up, wu), 0.5, 0.8, Xu)
        assert abs(la.log_marginal_likelihood() - lml) < TOL * abs(lml)
        np.testing.assert_allclose(la.predictive(Xu)[1], var, rtol=1e-8, atol=1e-12)


def test_residual_model_and_last_layer_without_bias():
    """A model with a skip connection (the engine's program, not a chain) and a last Dense layer
    without bias (its W alone is the last-layer posterior's parameters)."""
    if not hasattr(cl, "Residual"):
        pytest.skip("this curvlab has no cl.Residual")
    rng = np.random.default_rng(9)
    model = cl.Sequential([cl.Dense(3, 4, "tanh"), cl.Residual([cl.Dense(4, 4, "tanh")]),
                           cl.Dense(4, 2, bias=False)], input_shape=(3,))
    problem = cl.Problem(model, "cross_entropy", rng.standard_normal((9, 3)),
                         rng.integers(0, 2, 9))
    w = model.init(0) + 0.3 * rng.standard_normal(model.n_params)
    Xt = rng.standard_normal((4, 3))
    for kind in ("ggn", "diagonal"):
        la = laplace(problem, w, kind, prior_precision=2.0)
        lml, var = reference(problem, w, cl.matrix(problem, w, kind).to_dense(), 2.0, None, Xt)
        assert abs(la.log_marginal_likelihood() - lml) < TOL * abs(lml)
        np.testing.assert_allclose(la.predictive(Xt)[1], var, rtol=1e-8, atol=1e-12)
    la = laplace(problem, w, "ggn", prior_precision=2.0, subset="last_layer")
    sl = model.layer_slices()[-1]
    assert la.n_params == 8 == sl.stop - sl.start
    Lam = problem.N * oracles.GGN(problem, w)[sl, sl] + 2.0 * np.eye(8)
    z = problem.model.forward(w, problem.X)
    lml = (-np.sum(problem.lossfn.value(z, problem.y)) - w[sl] @ w[sl] + 4 * np.log(2.0)
           - 0.5 * np.linalg.slogdet(Lam)[1])
    assert abs(la.log_marginal_likelihood() - lml) < TOL * abs(lml)


def test_gp_identity_mse_exact_ggn():
    """MSE with the exact GGN: J*(JᵀJ/σ² + δI)⁻¹J*ᵀ (weight space) equals the GP posterior
    variance k** − k*X (K_XX + σ²I)⁻¹ kX* with kernel δ⁻¹ J(x) J(x')ᵀ (function space); σ² is
    not added."""
    problem, w = make_problem([2, 6, 2], "tanh", "mse", 10, seed=4)
    sigma, delta = 0.3, 2.5
    Xt = np.random.default_rng(5).standard_normal((6, 2))
    J = oracles.output_jacobian(problem, w).reshape(-1, len(w))                 # (N·K, P)
    Js = np.asarray(jacobian(lambda v: problem.model.forward(v, Xt))(w))         # (M, K, P)
    weight = np.einsum("mkp,pq,mlq->mkl", Js, np.linalg.inv(J.T @ J / sigma**2
                                                            + delta * np.eye(len(w))), Js)
    Kxx = J @ J.T / delta
    Ksx = np.einsum("mkp,np->mkn", Js, J) / delta
    Kss = np.einsum("mkp,mlp->mkl", Js, Js) / delta
    gp = Kss - np.einsum("mkn,nj,mlj->mkl", Ksx, np.linalg.inv(Kxx + sigma**2 * np.eye(len(J))),
                         Ksx)
    np.testing.assert_allclose(weight, gp, rtol=1e-8, atol=1e-12)
    var = laplace(problem, w, "ggn", prior_precision=delta, sigma_noise=sigma).predictive(Xt)[1]
    np.testing.assert_allclose(var, gp, rtol=1e-8, atol=1e-12)
    # and it is a variance of f, not of y: no σ² on the diagonal (that would be off by σ²)
    assert np.abs(np.einsum("mkk->mk", var) - np.einsum("mkk->mk", gp)).max() < 1e-3 * sigma**2


def ridge_map(problem, delta, sigma):
    """The MAP of a single Dense layer under MSE with prior N(0, δ⁻¹I): ridge regression."""
    Phi = np.c_[problem.X, np.ones(problem.N)]
    Wt = np.linalg.solve(Phi.T @ Phi + delta * sigma**2 * np.eye(Phi.shape[1]),
                         Phi.T @ problem.y)
    return Wt.T.ravel(), Phi


@pytest.mark.parametrize("kind", ["ggn", "hessian", "kflr"])
def test_evidence_of_bayesian_linear_regression(kind):
    """At the MAP of a model linear in its parameters the Laplace approximation is exact: the
    evidence is Σ_k log N(y_k; 0, σ²I + δ⁻¹ΦΦᵀ), Φ = [X, 1]. The default prior from the
    problem's L2 is δ = N·l2/σ², whose MAP is the problem's minimum."""
    rng = np.random.default_rng(6)
    N, D, K, sigma, delta = 25, 3, 2, 0.4, 1.7
    X = rng.standard_normal((N, D))
    y = X @ rng.standard_normal((D, K)) + sigma * rng.standard_normal((N, K))
    problem = cl.Problem(cl.MLP([D, K]), "mse", X, y, l2=delta * sigma**2 / N)
    w, Phi = ridge_map(problem, delta, sigma)
    assert np.linalg.norm(problem.grad(w)) < 1e-12
    cov = sigma**2 * np.eye(N) + Phi @ Phi.T / delta
    evidence = sum(scipy.stats.multivariate_normal(np.zeros(N), cov).logpdf(y[:, k])
                   for k in range(K))
    la = laplace(problem, w, kind, sigma_noise=sigma)
    assert la.prior_precision == pytest.approx(delta, rel=1e-14)
    assert abs(la.log_marginal_likelihood() - evidence) < 1e-9 * abs(evidence)
    # away from the MAP it is not the evidence (the test can tell)
    off = laplace(problem, w + 0.05, kind, sigma_noise=sigma).log_marginal_likelihood()
    assert abs(off - evidence) > 1e-3


@pytest.mark.parametrize("kind", ["kflr", "kfra"])
def test_one_sample_kronecker_is_the_ggns_layer_blocks(kind):
    problem, w = make_problem([3, 4, 2], "tanh", "mse", 1, seed=7)
    sigma, delta = 0.5, 0.8
    la = laplace(problem, w, kind, prior_precision=delta, sigma_noise=sigma)
    G = oracles.GGN(data_problem(problem), w)
    s = 1 / sigma**2
    for block, sl in zip(la.posterior_precision.blocks(), problem.model.layer_slices()):
        np.testing.assert_allclose(block, s * G[sl, sl] + delta * np.eye(sl.stop - sl.start),
                                   rtol=1e-10, atol=1e-12)
    logdet = sum(np.linalg.slogdet(s * G[sl, sl] + delta * np.eye(sl.stop - sl.start))[1]
                 for sl in problem.model.layer_slices())
    lml = reference(problem, w, G, delta, sigma)[0] + 0.5 * np.linalg.slogdet(
        s * G + delta * np.eye(len(w)))[1] - 0.5 * logdet
    assert abs(la.log_marginal_likelihood() - lml) < TOL * abs(lml)
    # one Dense layer: the whole GGN, so the same evidence as the exact GGN's
    problem1, w1 = make_problem([3, 2], "tanh", "cross_entropy", 1, seed=8)
    a = laplace(problem1, w1, kind, prior_precision=delta).log_marginal_likelihood()
    b = laplace(problem1, w1, "ggn", prior_precision=delta).log_marginal_likelihood()
    assert abs(a - b) < TOL * abs(b)


def test_kronecker_never_forms_p_by_p(monkeypatch):
    """Every Laplace quantity of a Kronecker kind comes from the factors: with every dense
    route refused (to_dense, the Kronecker product of a block, a P × P allocation over the
    memory budget), all of them still work — and the exact GGN's Laplace does not."""
    problem, w = make_problem([4, 6, 5, 3], "tanh", "cross_entropy", 20, seed=9)
    P = len(w)

    def refuse(*args, **kwargs):
        raise AssertionError("a P x P (or layer-sized Kronecker) matrix was formed")

    monkeypatch.setattr(Curvature, "to_dense", refuse)
    monkeypatch.setattr(BlockDiagonal, "to_dense", refuse)
    monkeypatch.setattr(KroneckerFactored, "_block_dense", refuse)
    monkeypatch.setattr(KroneckerFactored, "block_eigh", refuse)
    monkeypatch.setitem(cl._checks._BUDGET, "bytes", 8 * P * P - 1)
    Xt = np.random.default_rng(0).standard_normal((7, 4))
    for kind in ("kflr", "kfra", "kfac"):
        la = laplace(problem, w, kind, prior_precision=0.5)
        assert np.isfinite(la.log_marginal_likelihood())
        mean, var = la.predictive(Xt)
        assert var.shape == (7, 3, 3) and np.all(np.linalg.eigvalsh(var) > 0)
        assert la.predictive(Xt, link="probit").shape == (7, 3)
        assert la.sample(3).shape == (3, P)
        prec = la.posterior_precision
        v = np.ones(P)
        np.testing.assert_allclose(prec @ prec.solve(v), v, rtol=1e-9)
        la.optimize_prior_precision()
        assert la.prior_precision > 0
    with pytest.raises((AssertionError, MemoryError)):
        laplace(problem, w, "ggn", prior_precision=0.5)


def minimum(problem, seed=0):
    """A minimum: Adam, then Newton (with a line search, |H| where H is indefinite)."""
    w = cl.optim.minimize(problem, problem.model.init(seed), "adam", steps=500, lr=0.03).ws[-1]
    w = _retrain(problem, w, tol=1e-11, max_steps=100)[0]
    assert np.linalg.norm(problem.grad(w)) < 1e-10
    return w


def test_optimize_prior_precision_is_the_evidence_maximum():
    X, y = cl.datasets.regression1d(n=30, noise=0.1, seed=0)
    problem = cl.Problem(cl.MLP([1, 6, 1], "tanh"), "mse", X, y, l2=1e-3)
    w = minimum(problem)
    for kind in ("ggn", "kflr", "diagonal"):
        la = laplace(problem, w, kind, sigma_noise=0.5)
        before = la.log_marginal_likelihood()
        la.optimize_prior_precision()
        d, s = la.prior_precision, la.sigma_noise
        best = la.log_marginal_likelihood()
        assert best >= before
        for dd, ss in [(d * 1.01, s), (d / 1.01, s), (d, s * 1.01), (d, s / 1.01)]:
            assert la.log_marginal_likelihood(dd, ss) < best
        # stationary: central differences in log δ and log σ vanish
        h = 1e-5
        for grad in (la.log_marginal_likelihood(d * np.exp(h), s)
                     - la.log_marginal_likelihood(d * np.exp(-h), s),
                     la.log_marginal_likelihood(d, s * np.exp(h))
                     - la.log_marginal_likelihood(d, s * np.exp(-h))):
            assert abs(grad / (2 * h)) < 1e-5
        # only δ, σ fixed
        la2 = laplace(problem, w, kind, sigma_noise=0.5).optimize_prior_precision(
            sigma_noise=False)
        assert la2.sigma_noise == 0.5
        grid = la2.prior_precision * np.exp(np.linspace(-0.01, 0.01, 21))
        assert np.argmax(la2.log_marginal_likelihood(grid)) == 10


def test_sample_has_the_posterior_covariance():
    problem, w = make_problem([2, 3, 2], "tanh", "cross_entropy", 15, seed=10)
    for kind in ("ggn", "kflr", "diagonal", "ekfac"):
        la = laplace(problem, w, kind, prior_precision=1.5)
        draws = la.sample(40000, seed=1)
        cov = np.linalg.inv(la.posterior_precision.to_dense())
        emp = np.cov(draws.T)
        assert np.linalg.norm(emp - cov) / np.linalg.norm(cov) < 0.03
        assert np.abs(draws.mean(0) - w).max() < 5 * np.sqrt(np.diag(cov).max() / 40000)
        np.testing.assert_array_equal(la.sample(2, seed=3), la.sample(2, seed=3))


def test_probit_and_monte_carlo_links():
    """bce, one output: MC over the GLM against Gauss-Hermite quadrature of E[sigmoid(f)], and
    probit against its formula; cross-entropy: both are probabilities, and with a vanishing
    posterior variance both give softmax(f)."""
    problem, w = make_problem([2, 4, 1], "tanh", "bce", 10, seed=11)
    la = laplace(problem, w, "ggn", prior_precision=0.3)
    Xt = np.random.default_rng(2).standard_normal((5, 2))
    mean, var = la.predictive(Xt)
    x, wq = np.polynomial.hermite_e.hermegauss(80)
    exact = np.array([np.sum(wq / (1 + np.exp(-(m + np.sqrt(v) * x)))) / np.sqrt(2 * np.pi)
                      for m, v in zip(mean[:, 0], var[:, 0, 0])])
    mc = la.predictive(Xt, link="mc", samples=40000, seed=0)[:, 0]
    assert np.abs(mc - exact).max() < 4 * 0.5 / np.sqrt(40000)
    probit = 1 / (1 + np.exp(-mean[:, 0] / np.sqrt(1 + np.pi / 8 * var[:, 0, 0])))
    np.testing.assert_allclose(la.predictive(Xt, link="probit")[:, 0], probit, rtol=1e-13)
    assert np.abs(probit - exact).max() < 0.02          # the probit approximation is close
    problem, w = make_problem([2, 4, 3], "tanh", "cross_entropy", 10, seed=12)
    z = problem.model.forward(w, Xt)
    softmax = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    for link in ("probit", "mc"):
        p = laplace(problem, w, "ggn", prior_precision=1e12).predictive(Xt, link=link)
        np.testing.assert_allclose(p.sum(1), 1, rtol=1e-12)
        np.testing.assert_allclose(p, softmax, atol=1e-5)


def test_last_layer_is_the_last_block_of_the_full_posterior():
    problem, w = make_problem([3, 5, 2], "tanh", "mse", 8, seed=13)
    sigma, delta = 0.7, 1.2
    la = laplace(problem, w, "ggn", prior_precision=delta, sigma_noise=sigma, subset="last_layer")
    sl = problem.model.layer_slices()[-1]
    assert la.n_params == sl.stop - sl.start
    G = oracles.GGN(data_problem(problem), w)[sl, sl]
    Lam = problem.N / sigma**2 * G + delta * np.eye(la.n_params)
    z = problem.model.forward(w, problem.X)
    lml = (-0.5 * problem.N * 2 * np.log(2 * np.pi * sigma**2)
           - np.sum((z - problem.y) ** 2) / (2 * sigma**2) - 0.5 * delta * w[sl] @ w[sl]
           + 0.5 * la.n_params * np.log(delta) - 0.5 * np.linalg.slogdet(Lam)[1])
    assert abs(la.log_marginal_likelihood() - lml) < TOL * abs(lml)
    Xt = np.random.default_rng(3).standard_normal((4, 3))
    J = np.asarray(jacobian(lambda v: problem.model.forward(v, Xt))(w))[:, :, sl]
    np.testing.assert_allclose(la.predictive(Xt)[1],
                               np.einsum("mkp,pq,mlq->mkl", J, np.linalg.inv(Lam), J),
                               rtol=1e-9, atol=1e-13)
    draws = la.sample(4)
    np.testing.assert_array_equal(draws[:, :sl.start], np.tile(w[:sl.start], (4, 1)))
    assert np.all(draws[:, sl] != w[sl])
    # the Kronecker kinds on the last layer too
    lk = laplace(problem, w, "kflr", prior_precision=delta, sigma_noise=sigma, subset="last_layer")
    assert lk.structure == "kronecker" and np.isfinite(lk.log_marginal_likelihood())


def test_structure_comes_from_the_registry_not_the_name():
    problem, w = make_problem([3, 4, 2], "tanh", "cross_entropy", 6, seed=14)
    register("toy_diag", lambda problem, w: cl.matrix(problem, w, "diagonal"), "toy",
             structure="diagonal")
    register("toy_kron", lambda problem, w: cl.matrix(problem, w, "kflr"), "toy",
             structure="kronecker")
    register("toy_wrong", lambda problem, w: cl.matrix(problem, w, "ggn"), "toy",
             structure="kronecker")
    try:
        a = laplace(problem, w, "toy_diag", prior_precision=1.0)
        b = laplace(problem, w, "diagonal", prior_precision=1.0)
        assert a.structure == "diagonal" and isinstance(a.posterior_precision, cl.Diagonal)
        assert a.log_marginal_likelihood() == b.log_marginal_likelihood()
        c = laplace(problem, w, "toy_kron", prior_precision=1.0)
        assert isinstance(c.posterior_precision, cl.KroneckerFactored)
        with pytest.raises(TypeError, match="registered with structure 'kronecker'"):
            laplace(problem, w, "toy_wrong", prior_precision=1.0)
    finally:
        for name in ("toy_diag", "toy_kron", "toy_wrong"):
            unregister(name)
    # your own matrix of the data term: dense, or a diagonal without layer blocks
    Xt = np.ones((2, 3))
    C = cl.matrix(data_problem(problem), w, "ggn").to_dense()
    mine = laplace(problem, w, C, prior_precision=1.0)
    ref = laplace(problem, w, "ggn", prior_precision=1.0)
    assert mine.structure == "dense"
    assert abs(mine.log_marginal_likelihood() - ref.log_marginal_likelihood()) < 1e-10
    d = cl.matrix(data_problem(problem), w, "diagonal").d
    mine = laplace(problem, w, cl.Diagonal(d), prior_precision=1.0)
    assert mine.structure == "diagonal"
    np.testing.assert_allclose(mine.predictive(Xt)[1], b.predictive(Xt)[1], rtol=1e-12)
    with pytest.raises(ValueError, match="must carry no L2 term"):
        laplace(problem, w, cl.Diagonal(d, l2=0.1), prior_precision=1.0)


def test_bad_inputs_say_what_and_how():
    problem, w = make_problem([3, 4, 2], "tanh", "cross_entropy", 6, seed=15)
    reg, wr = make_problem([3, 4, 2], "tanh", "mse", 6, seed=15, l2=0.1)
    with pytest.raises(ValueError, match="prior_precision must be a finite number > 0"):
        laplace(problem, w, prior_precision=0.0)
    with pytest.raises(ValueError, match="prior_precision must be a finite number > 0"):
        laplace(problem, w, prior_precision=-1.0)
    with pytest.raises(ValueError, match="no L2 term.*pass prior_precision"):
        laplace(problem, w)
    with pytest.raises(ValueError, match="sigma_noise must be a finite number > 0"):
        laplace(reg, wr, sigma_noise=0.0)
    with pytest.raises(ValueError, match="pass sigma_noise"):
        laplace(reg, wr)
    with pytest.raises(ValueError, match="'cross_entropy' problem has none"):
        laplace(problem, w, prior_precision=1.0, sigma_noise=1.0)
    la = laplace(problem, w, prior_precision=1.0)
    with pytest.raises(ValueError, match="sigma_noise is for 'mse'"):
        la.log_marginal_likelihood(sigma_noise=2.0)
    with pytest.raises(ValueError, match="link=None"):
        laplace(reg, wr, sigma_noise=1.0).predictive(reg.X, link="probit")
    with pytest.raises(ValueError, match="unknown link"):
        la.predictive(problem.X, link="bridge")
    with pytest.raises(ValueError, match="unknown subset"):
        laplace(problem, w, prior_precision=1.0, subset="first_layer")
    with pytest.raises(ValueError, match=r"X must have shape \(N, 3\)"):
        la.predictive(np.ones((2, 4)))
    # the Hessian away from a minimum with a small prior: not positive definite, use the GGN
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite.*kind='ggn'"):
        laplace(problem, w, "hessian", prior_precision=1e-3)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite.*kind='ggn'"):
        laplace(problem, w, "diag_hessian", prior_precision=1e-3)
    la_h = laplace(problem, w, "hessian", prior_precision=50.0)
    with pytest.raises(ValueError, match="negative eigenvalues.*kind='ggn'"):
        la_h.optimize_prior_precision()
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        la_h.log_marginal_likelihood(prior_precision=1e-3)
    unit = cl.UnitNetwork(5, [(0, 2), (1, 2), (2, 3), (2, 4)], inputs=[0, 1], outputs=[3, 4])
    up = cl.Problem(unit, "cross_entropy", np.ones((3, 2)), [0, 1, 0])
    with pytest.raises(TypeError, match="subset='last_layer' needs a layered model"):
        laplace(up, unit.init(0), prior_precision=1.0, subset="last_layer")
    with pytest.raises(TypeError, match="laplace needs a Problem"):
        laplace(lambda v: v @ v, np.ones(2))
    assert isinstance(laplace(up, unit.init(0), prior_precision=1.0), Laplace)
    if hasattr(cl, "MeanPool"):                 # sequence outputs: a loss at every position
        seq = cl.Sequential([cl.Dense(3, 4, "tanh"), cl.Dense(4, 2)], input_shape=(5, 3))
        sp = cl.Problem(seq, "mse", np.ones((2, 5, 3)), np.ones((2, 5, 2)))
        with pytest.raises(ValueError, match="vector outputs.*sequences"):
            laplace(sp, seq.init(0), prior_precision=1.0, sigma_noise=1.0)


# laplace-torch, after the mapping in curvlab/laplace.py's docstring ---------------------------

def import_laplace_torch():
    """laplace-torch, imported without torchvision: the torchvision on PyPI is a CUDA build that
    does not match the pinned CPU torch (`operator torchvision::nms does not exist`), and
    torchmetrics (a laplace-torch dependency) imports it when its metadata says it is installed.
    laplace-torch itself does not need it."""
    try:
        importlib.metadata.version("laplace-torch")
    except importlib.metadata.PackageNotFoundError:
        if os.environ.get("CI"):
            pytest.fail("laplace-torch is not installed (the test extra lists it)")
        pytest.skip("laplace-torch is not installed: pip install laplace-torch==0.3")
    real = importlib.metadata.version

    def version(name):
        if name == "torchvision":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    # bench/ holds a laplace_posterior.py, not a laplace.py, so that the browser tests that put
    # bench/ on sys.path cannot shadow laplace-torch; refuse a module that is not the package
    stale = sys.modules.get("laplace")
    if stale is not None and not hasattr(stale, "__path__"):
        del sys.modules["laplace"]
    saved = sys.modules.get("torchvision", "missing")
    sys.modules["torchvision"] = None
    importlib.metadata.version = version
    try:
        import lightning_utilities.core.imports as lu
        lu_saved, lu._version = lu._version, version
        try:
            import laplace as laplace_torch
            import laplace.curvature  # noqa: F401
        finally:
            lu._version = lu_saved
    finally:
        importlib.metadata.version = real
        if saved == "missing":
            sys.modules.pop("torchvision", None)
        else:
            sys.modules["torchvision"] = saved
    return laplace_torch


@pytest.fixture(scope="module")
def lt():
    return import_laplace_torch()


@pytest.fixture(scope="module")
def torch_net():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4),
                              torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    return net


@pytest.mark.parametrize("likelihood", ["regression", "classification"])
@pytest.mark.parametrize("structure", ["full", "diag"])
@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_equals_laplace_torch(lt, torch_net, likelihood, structure, subset):
    """log marginal likelihood, GLM predictive mean and variance (and the probit predictive)
    equal laplace-torch's to 1e-6 (measured: 1e-14). Its BackPACK backend builds the GGN in
    float64 throughout; its default curvlinops backend multiplies by a float32 identity
    (`linop @ torch.eye(P)`), so its full GGN carries ~1e-8 relative error (next test)."""
    import torch
    model, w = cl.from_torch(torch_net, input_shape=(3,))
    rng = np.random.default_rng(0)
    N, sigma, delta = 30, 0.7, 1.3
    X, Xt = rng.standard_normal((N, 3)), rng.standard_normal((7, 3))
    y = rng.standard_normal((N, 2)) if likelihood == "regression" else rng.integers(0, 2, N)
    problem = cl.Problem(model, "mse" if likelihood == "regression" else "cross_entropy", X, y)
    kw = {"sigma_noise": sigma} if likelihood == "regression" else {}
    theirs = lt.Laplace(torch_net, likelihood, subset_of_weights=subset,
                        hessian_structure=structure, prior_precision=delta,
                        backend=lt.curvature.BackPackGGN, **kw)
    data = torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(y))
    theirs.fit(torch.utils.data.DataLoader(data, batch_size=N))
    ours = laplace(problem, w, "ggn" if structure == "full" else "diagonal",
                   prior_precision=delta, subset=subset, **kw)
    assert abs(ours.log_marginal_likelihood() - theirs.log_marginal_likelihood().item()) < 1e-6
    f_mu, f_var = theirs._glm_predictive_distribution(torch.tensor(Xt))
    mean, var = ours.predictive(Xt)
    np.testing.assert_allclose(mean, f_mu.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(var, f_var.numpy(), rtol=0, atol=1e-6)
    if likelihood == "classification":
        probs = theirs(torch.tensor(Xt), link_approx="probit").detach().numpy()
        np.testing.assert_allclose(ours.predictive(Xt, link="probit"), probs, rtol=0, atol=1e-6)
    # and a different prior and noise through the same call
    f64 = lambda x: torch.tensor(x, dtype=torch.float64)            # not float32's 0.9
    new = {"sigma_noise": f64(0.9)} if likelihood == "regression" else {}
    a = theirs.log_marginal_likelihood(prior_precision=f64(0.4), **new).item()
    b = ours.log_marginal_likelihood(0.4, **({"sigma_noise": 0.9} if new else {}))
    assert abs(a - b) < 1e-6


def test_equals_laplace_torch_default_backend(lt, torch_net):
    """laplace-torch's default (curvlinops) backend: equal to within its float32 identity."""
    import torch
    model, w = cl.from_torch(torch_net, input_shape=(3,))
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((30, 3)), rng.integers(0, 2, 30)
    problem = cl.Problem(model, "cross_entropy", X, y)
    data = torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(y))
    for structure, kind in [("full", "ggn"), ("diag", "diagonal")]:
        theirs = lt.Laplace(torch_net, "classification", subset_of_weights="all",
                            hessian_structure=structure, prior_precision=1.3)
        theirs.fit(torch.utils.data.DataLoader(data, batch_size=30))
        ours = laplace(problem, w, kind, prior_precision=1.3).log_marginal_likelihood()
        assert abs(ours - theirs.log_marginal_likelihood().item()) < 1e-6
        if kind == "ggn":
            order = cl.torch_bridge.torch_order(model)
            H = 30 * cl.ggn(problem, w)[np.ix_(order, order)]
            assert np.abs(theirs.H.numpy() - H).max() < 1e-6 * np.abs(H).max()
