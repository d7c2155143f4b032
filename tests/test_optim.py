import numpy as np
import pytest

import curvlab as cl
from curvlab.optim import minimize
from tests import oracles
from tests.conftest import make_problem


def test_newton_solves_a_strictly_convex_quadratic_in_one_step():
    f, A, c = cl.objectives.make_quadratic(condition=1000.0, center=(1.0, -2.0))
    for method in ("newton", "gauss_newton"):
        hyper = {} if method == "newton" else {"damping": 0.0}
        tr = minimize(f, np.array([5.0, 3.0]), method, steps=1, **hyper)
        assert np.allclose(tr.ws[1], c, atol=1e-12) and tr.losses[1] < 1e-20
    gd = minimize(f, np.array([5.0, 3.0]), "gd", steps=50, lr=1 / 1000)
    assert gd.losses[-1] > 1.0                                 # ill-conditioning stalls GD


def test_damped_newton_with_huge_damping_is_gradient_descent_with_step_one_over_eta():
    problem, w = make_problem([3, 5, 3], "tanh", "cross_entropy", 10)
    eta = 1e6
    nt = minimize(problem, w, "newton", steps=3, variant="damped", damping=eta)
    gd = minimize(problem, w, "gd", steps=3, lr=1 / eta)
    assert oracles.rel(nt.ws[-1] - w, gd.ws[-1] - w) < 1e-4


def test_kfac_step_is_newton_step_on_a_single_linear_layer():
    problem, w = make_problem([4, 3], "identity", "mse", 20)
    newton = minimize(problem, w, "newton", steps=1)
    for m in ("kflr", "kfra"):
        tr = minimize(problem, w, m, steps=1, damping=0.0, tikhonov=False)
        assert oracles.rel(tr.ws[1], newton.ws[1]) < 1e-9


def test_saddle_free_newton_descends_where_plain_newton_climbs():
    problem, w = make_problem([2, 6, 3], "tanh", "cross_entropy", 8, scale=2.0)
    assert np.linalg.eigvalsh(cl.hessian(problem, w)).min() < 0
    sfn = minimize(problem, w, "newton", steps=1, variant="abs", damping=1e-1, lr=0.5)
    assert sfn.losses[1] < sfn.losses[0]


@pytest.mark.parametrize("method,hyper", [
    ("gd", dict(lr=1e-3)), ("momentum", dict(lr=5e-4, beta=0.9)), ("nesterov", dict(lr=5e-4)),
    ("adam", dict(lr=0.05)), ("newton", dict(variant="damped", damping=1.0)),
    ("gauss_newton", dict(damping=1e-3)), ("natural_gradient", dict(damping=1e-3)),
])
def test_methods_on_rosenbrock(method, hyper):
    tr = minimize(cl.objectives.rosenbrock, np.array([-1.2, 1.0]), method, steps=60, **hyper)
    assert tr.losses[-1] < tr.losses[0] and not tr.diverged
    assert tr.ws.shape == (61, 2) and np.all(np.diff(tr.times) >= 0)


ALL = [("gd", dict(lr=0.5)), ("momentum", dict(lr=0.2)), ("nesterov", dict(lr=0.2)),
       ("adam", dict(lr=0.05)), ("newton", dict(variant="abs", damping=0.1, lr=0.5)),
       ("gauss_newton", dict(damping=0.1)), ("natural_gradient", dict(damping=0.1)),
       ("kfac", dict(damping=0.1)), ("kflr", dict(damping=0.1)), ("kfra", dict(damping=0.1)),
       ("diagonal", dict(damping=0.1, lr=0.3)), ("hessian_free", dict())]


@pytest.mark.parametrize("method,hyper", ALL)
def test_every_method_trains_a_small_network(method, hyper):
    X, y = cl.datasets.spirals(n=60, seed=1)
    problem = cl.Problem(cl.MLP([2, 8, 3], "tanh"), "cross_entropy", X, y)
    tr = minimize(problem, problem.model.init(0), method, steps=15, **hyper)
    assert tr.losses[-1] < 0.9 * tr.losses[0], tr
    assert len(tr.n_grads) == len(tr.losses) == len(tr.ws) == 16
    assert tr.n_grads[1:].min() >= 1


def test_mini_batch_runs_record_full_losses():
    X, y = cl.datasets.moons(n=80, seed=0)
    problem = cl.Problem(cl.MLP([2, 6, 2]), "cross_entropy", X, y)
    tr = minimize(problem, problem.model.init(0), "kflr", steps=10, batch_size=16, damping=0.1)
    assert np.allclose(tr.losses, [problem.loss(v) for v in tr.ws])
    a = minimize(problem, problem.model.init(0), "adam", steps=5, batch_size=16, seed=3, lr=0.1)
    b = minimize(problem, problem.model.init(0), "adam", steps=5, batch_size=16, seed=3, lr=0.1)
    assert np.array_equal(a.ws, b.ws)


def test_hessian_free_adapts_damping_and_uses_cg():
    X, y = cl.datasets.spirals(n=60, seed=1)
    problem = cl.Problem(cl.MLP([2, 8, 3], "tanh"), "cross_entropy", X, y)
    tr = minimize(problem, problem.model.init(0), "hessian_free", steps=12, damping=10.0)
    rho, eta = tr.extra["rho"][1:], tr.dampings[1:]
    for k in range(len(rho) - 1):
        if rho[k] > 0.75:
            assert eta[k + 1] < eta[k]
        elif not rho[k] >= 0.25:
            assert eta[k + 1] > eta[k]
    assert tr.n_products[1:].min() >= 1


def test_divergence_stops_the_run_and_says_so():
    tr = minimize(cl.objectives.rosenbrock, np.array([-1.2, 1.0]), "gd", steps=100, lr=0.1)
    assert tr.diverged and "diverged" in tr.status and len(tr) < 101
    assert np.all(np.isfinite(tr.losses))


def test_reparameterisation_invariance():
    X, y = cl.datasets.regression1d(n=30, seed=0)
    problem = cl.Problem(cl.MLP([1, 4, 1], "tanh"), "mse", X, y)
    w0 = problem.model.init(1)
    rng = np.random.default_rng(0)
    R = np.eye(len(w0)) + 0.3 * rng.standard_normal((len(w0), len(w0)))
    b = 0.1 * rng.standard_normal(len(w0))
    rp = cl.optim.reparameterize(problem, R, b)
    wt0 = rp.from_original(w0)
    assert rp(wt0) == pytest.approx(problem.loss(w0))
    for method, hyper in [("newton", {}), ("gauss_newton", dict(damping=0.0))]:
        a = minimize(problem, w0, method, steps=4, **hyper)
        c = minimize(rp, wt0, method, steps=4, **hyper)
        assert oracles.rel(rp.to_original(c.ws), a.ws) < 1e-7, method
    a = minimize(problem, w0, "gd", steps=4, lr=0.05)
    c = minimize(rp, wt0, "gd", steps=4, lr=0.05)
    assert oracles.rel(rp.to_original(c.ws), a.ws) > 1e-3


def test_optimiser_bad_input():
    f = cl.objectives.rosenbrock
    with pytest.raises(ValueError, match="unknown method 'lbfgs'"):
        minimize(f, np.zeros(2), "lbfgs")
    with pytest.raises(TypeError, match="bad settings for method 'gd'"):
        minimize(f, np.zeros(2), "gd", learning_rate=0.1)
    with pytest.raises(ValueError, match="NaN"):
        minimize(f, np.array([np.nan, 0.0]), "gd")
    with pytest.raises(TypeError, match="needs a Problem"):
        minimize(f, np.zeros(2), "kfac", steps=1)
    with pytest.raises(ValueError, match="invertible"):
        cl.optim.reparameterize(f, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        minimize(lambda w: np.log(w[0] - 1), np.zeros(2), "gd")


@pytest.mark.parametrize("method", ["gauss_newton", "kflr"])
def test_levenberg_marquardt_in_runs_rejects_bad_steps_and_adapts(method):
    X, y = cl.datasets.spirals(n=60, seed=1)
    problem = cl.Problem(cl.MLP([2, 8, 3], "tanh"), "cross_entropy", X, y)
    hyper = dict(damping=1e-4, adapt_damping=True) | ({} if method == "gauss_newton" else dict(ema=0.0, tikhonov=False))
    tr = minimize(problem, problem.model.init(0), method, steps=15, **hyper)
    assert np.all(np.diff(tr.losses) <= 1e-12)                # rejected steps leave w unchanged
    rho, eta = tr.extra["rho"][1:], tr.dampings[1:]
    assert not tr.extra["accepted"].all()                      # tiny initial damping: some rejected
    for k in range(len(rho) - 1):
        if not rho[k] >= 0.25:
            assert eta[k + 1] > eta[k]
        elif rho[k] > 0.75:
            assert eta[k + 1] < eta[k]
