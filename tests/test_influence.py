"""Influence functions against their definition (autograd's Hessian and per-sample gradients)
and against the truth they approximate, leave-one-out retraining — itself checked against an
independent optimiser (scipy's trust-region Newton on autograd's derivatives)."""

import importlib

import numpy as np
import pytest
import scipy.optimize
from autograd import grad, hessian

import curvlab as cl
from curvlab.curvature.base import BlockDiagonal, Curvature
from curvlab.curvature.kfac import KroneckerFactored
from curvlab.influence import _retrain, influence, influence_table, leave_one_out
from tests import oracles
from tests.conftest import make_problem

# the module (cl.influence is the function once the package exports it)
influence_module = importlib.import_module("curvlab.influence")


def ridge(N=400, D=4, l2=0.5, seed=0):
    """Ridge regression (one Dense layer, MSE, L2 λ) at its exact minimum, and test points."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    y = X @ (2 * rng.standard_normal(D)) + 0.5 * rng.standard_normal(N)
    problem = cl.Problem(cl.MLP([D, 1]), "mse", X, y, l2=l2)
    Phi = np.c_[X, np.ones(N)]
    w = np.linalg.solve(Phi.T @ Phi + N * l2 * np.eye(D + 1), Phi.T @ y)
    Xt = rng.standard_normal((6, D))
    yt = Xt @ rng.standard_normal(D)
    return problem, w, Xt, yt


def converged(problem, seed=0):
    w = cl.optim.minimize(problem, problem.model.init(seed), "adam", steps=400, lr=0.03).ws[-1]
    return _retrain(problem, w, tol=1e-12, max_steps=100)[0]


def test_definition_against_autograd():
    problem, w = make_problem([3, 4, 3], "tanh", "cross_entropy", 10, seed=1, l2=0.05)
    rng = np.random.default_rng(2)
    Xt, yt = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)
    test = cl.Problem(problem.model, "cross_entropy", Xt, yt)
    H = oracles.H(problem, w)
    gt = oracles.per_sample_grads(test, w)
    gi = oracles.per_sample_grads(problem, w) + problem.l2 * w
    expected = gi @ np.linalg.solve(H, gt.T) / problem.N
    np.testing.assert_allclose(influence(problem, w, Xt, yt), expected, rtol=1e-9, atol=1e-13)
    # any kind: the same formula with that kind's matrix (λ included), damping added
    for kind in ("ggn", "kflr", "ekfac", "diagonal"):
        C = cl.matrix(problem, w, kind).to_dense() + 0.1 * np.eye(len(w))
        np.testing.assert_allclose(influence(problem, w, Xt, yt, kind=kind, damping=0.1),
                                   gi @ np.linalg.solve(C, gt.T) / problem.N,
                                   rtol=1e-9, atol=1e-13)


def test_ridge_influence_is_leave_one_out_with_the_l2_term():
    """Ridge regression, λ = 0.5, N = 2000: removing a point removes its share of the L2 term
    too. With the λw term 40 removals are predicted to 0.2 % of the retrained truth (relative
    norm; the O(1/N) remainder: 1.1 % at N = 400, 0.16 % at N = 4000), without it 52 % off."""
    problem, w, Xt, yt = ridge(N=2000)
    assert np.linalg.norm(problem.grad(w)) < 1e-12
    points = np.arange(0, 2000, 50)
    truth = leave_one_out(problem, w, Xt, yt, points=points)
    pred = influence(problem, w, Xt, yt)[points]
    err = np.linalg.norm(pred - truth) / np.linalg.norm(truth)
    test = cl.Problem(problem.model, "mse", Xt, yt)
    without = (cl.per_sample_grads(problem, w)
               @ np.linalg.solve(cl.hessian(problem, w), cl.per_sample_grads(test, w).T))
    err_without = np.linalg.norm(without[points] / problem.N - truth) / np.linalg.norm(truth)
    assert err < 5e-3
    assert err_without > 0.3


def test_leave_one_out_against_an_independent_optimiser():
    problem, _ = make_problem([2, 3, 2], "tanh", "cross_entropy", 40, seed=3, l2=0.05)
    w = converged(problem)
    rng = np.random.default_rng(4)
    Xt, yt = rng.standard_normal((3, 2)), rng.integers(0, 2, 3)
    test = cl.Problem(problem.model, "cross_entropy", Xt, yt)
    points = [0, 5]
    ours = leave_one_out(problem, w, Xt, yt, points=points, tol=1e-11)
    for r, i in enumerate(points):
        sub = problem.subset(np.delete(np.arange(problem.N), i))
        res = scipy.optimize.minimize(sub.loss, w, jac=grad(sub.loss), hess=hessian(sub.loss),
                                      method="trust-exact", options={"gtol": 1e-10})
        assert np.linalg.norm(grad(sub.loss)(res.x)) < 1e-9
        loss = lambda v: test.lossfn.value(test.model.forward(v, Xt), test.y)
        np.testing.assert_allclose(ours[r], loss(res.x) - loss(w), rtol=1e-6, atol=1e-10)


def test_kronecker_influence_never_forms_p_by_p(monkeypatch):
    problem, w = make_problem([4, 6, 3], "tanh", "cross_entropy", 20, seed=5, l2=0.01)
    Xt, yt = np.ones((2, 4)), [0, 2]
    expected = {k: influence(problem, w, Xt, yt, kind=k) for k in ("kflr", "kfra")}

    def refuse(*args, **kwargs):
        raise AssertionError("a P x P (or layer-sized Kronecker) matrix was formed")

    monkeypatch.setattr(Curvature, "to_dense", refuse)
    monkeypatch.setattr(BlockDiagonal, "to_dense", refuse)
    monkeypatch.setattr(KroneckerFactored, "_block_dense", refuse)
    for kind, value in expected.items():
        np.testing.assert_array_equal(influence(problem, w, Xt, yt, kind=kind), value)
    with pytest.raises(AssertionError):
        cl.matrix(problem, w, "kflr").to_dense()           # the patch does bite


def test_influence_table_reports_order_and_scale():
    X, y = cl.datasets.moons(n=40, noise=0.2, seed=0)
    problem = cl.Problem(cl.MLP([2, 4, 2], "tanh"), "cross_entropy", X, y, l2=0.02)
    w = converged(problem)
    Xt, yt = cl.datasets.moons(n=6, noise=0.2, seed=1)
    table = influence_table(problem, w, Xt, yt, kinds=("hessian", "ggn", "kflr", "diagonal"),
                            points=np.arange(0, 40, 2), progress=False)
    assert [r.kind for r in table] == ["hessian", "ggn", "kflr", "diagonal"]
    hess = table[0]
    assert hess.spearman > 0.9 and hess.pearson > 0.9 and 0.8 < hess.scale < 1.2
    pred = table.scores["hessian"]
    assert hess.scale == pytest.approx(np.linalg.norm(pred) / np.linalg.norm(table.truth))
    text = str(table)
    assert "rank corr." in text and "hessian" in text and "<table>" in table._repr_html_()
    # reuse a truth computed before
    again = influence_table(problem, w, Xt, yt, kinds=("hessian",), points=table.points,
                            truth=table.truth)
    assert again[0].spearman == hess.spearman
    with pytest.raises(ValueError, match="truth has 20 rows but points has 3"):
        influence_table(problem, w, Xt, yt, points=[0, 1, 2], truth=table.truth)


def test_bad_inputs_say_what_and_how(monkeypatch):
    problem, w, Xt, yt = ridge(N=50)
    with pytest.raises(ValueError, match="w is not a minimum.*‖∇L\\(w\\)‖ = 0.*Converge first"):
        leave_one_out(problem, w + 0.1, Xt, yt, points=[0])
    with pytest.raises(ValueError, match="distinct indices in 0..49"):
        leave_one_out(problem, w, Xt, yt, points=[50])
    with pytest.raises(ValueError, match="non-empty list"):
        leave_one_out(problem, w, Xt, yt, points=[])
    with pytest.raises(ValueError, match="X_test, y_test: X and y disagree on the number"):
        influence(problem, w, Xt, yt[:3])
    with pytest.raises(ValueError, match="damping must be a finite number >= 0"):
        influence(problem, w, Xt, yt, damping=-1.0)
    with pytest.raises(np.linalg.LinAlgError, match="pass damping > 0"):
        flat = cl.Problem(cl.MLP([4, 1]), "mse", np.zeros((3, 4)), np.zeros(3))
        influence(flat, np.zeros(5), Xt, yt, kind="ggn")
    big = cl.Problem(cl.MLP([60, 40, 1]), "mse", np.zeros((5, 60)), np.zeros(5))
    with pytest.raises(ValueError, match="P = 2481.*too large to retrain.*cl.influence"):
        leave_one_out(big, big.model.init(0), np.zeros((1, 60)), np.zeros(1))
    monkeypatch.setattr(influence_module, "MAX_FLOPS", 1e3)
    with pytest.raises(ValueError, match="retrains 50 times.*GFLOP.*Pass points="):
        leave_one_out(problem, w, Xt, yt)
    unit = cl.UnitNetwork(4, [(0, 2), (1, 2), (2, 3)], inputs=[0, 1], outputs=[3])
    up = cl.Problem(unit, "mse", np.ones((3, 2)), np.ones(3))
    with pytest.raises(TypeError, match="influence needs a layered model"):
        influence(up, unit.init(0), np.ones((1, 2)), np.ones(1))
