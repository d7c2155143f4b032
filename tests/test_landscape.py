import numpy as np
import pytest

import curvlab as cl
from curvlab import landscape as ls
from tests import oracles
from tests.conftest import make_problem


@pytest.fixture(scope="module")
def prob():
    return make_problem([2, 6, 3], "tanh", "cross_entropy", 15, l2=0.01)


def test_grids_equal_pointwise_losses(prob):
    problem, w = prob
    d1, d2 = ls.direction(problem, w, "random", seed=1), ls.direction(problem, w, "filter", seed=2)
    a = np.linspace(-0.7, 0.7, 5)
    Z1 = ls.grid(problem, w, d1, span=0.7, n=5)
    assert np.allclose(Z1, [problem.loss(w + ai * d1) for ai in a], rtol=1e-13)
    Z2, A2 = ls.grid(problem, w, d1, d2, span=0.7, n=5, accuracy=True)
    want = np.array([[problem.loss(w + ai * d1 + aj * d2) for aj in a] for ai in a])
    assert np.allclose(Z2, want, rtol=1e-13)
    acc = lambda v: np.mean(problem.outputs(v).argmax(1) == problem.y)
    assert A2[1, 3] == acc(w + a[1] * d1 + a[3] * d2)


def test_batched_grid_agrees_across_chunk_sizes(prob, monkeypatch):
    problem, w = prob
    d1, d2 = ls.direction(problem, w, seed=3), ls.direction(problem, w, seed=4)
    Z = ls.grid(problem, w, d1, d2, n=7)
    monkeypatch.setattr(ls, "_GRID_BYTES", 1)                 # one point per chunk
    # equal to rounding: BLAS may pick a different kernel for a different chunk shape
    assert np.allclose(ls.grid(problem, w, d1, d2, n=7), Z, rtol=1e-14, atol=0)


@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_grid_for_other_losses(loss):
    problem, w = make_problem([3, 4, 2], "softplus", loss, 6)
    d = ls.direction(problem, w, "gradient")
    Z = ls.grid(problem, w, d, span=0.5, n=4)
    assert np.allclose(Z, [problem.loss(w + a * d) for a in np.linspace(-0.5, 0.5, 4)], rtol=1e-13)


def test_grid_for_generic_objectives():
    f = cl.objectives.rosenbrock
    w = np.array([-1.0, 1.0])
    Z = ls.grid(f, w, np.array([1.0, 0.0]), np.array([0.0, 1.0]), span=2, n=9)
    a = np.linspace(-2, 2, 9)
    assert Z[2, 7] == pytest.approx(float(f(w + [a[2], a[7]])))


@pytest.mark.parametrize("kind", ["hessian", "ggn", "fisher", "empirical_fisher", "kfac", "kflr",
                                  "kfra", "diagonal"])
def test_quadratic_models_equal_the_dense_formula(prob, kind):
    problem, w = prob
    d1, d2 = ls.direction(problem, w, seed=5), ls.direction(problem, w, seed=6)
    C = cl.matrix(problem, w, kind).to_dense()
    g, L0 = problem.grad(w), problem.loss(w)
    Q = ls.quadratic(problem, w, d1, d2, kind=kind, span=0.5, n=3, damping=0.1)
    a = np.linspace(-0.5, 0.5, 3)
    for i, j in [(0, 0), (0, 2), (1, 2), (2, 1)]:
        d = a[i] * d1 + a[j] * d2
        assert Q[i, j] == pytest.approx(L0 + g @ d + 0.5 * d @ (C + 0.1 * np.eye(len(g))) @ d, rel=1e-10)


def test_hessian_model_matches_loss_to_second_order(prob):
    problem, w = prob
    d1, d2 = ls.direction(problem, w, seed=7), ls.direction(problem, w, seed=8)
    err = []
    for span in (0.2, 0.1, 0.05):
        Z = ls.grid(problem, w, d1, d2, span=span, n=5)
        err.append(np.abs(Z - ls.quadratic(problem, w, d1, d2, "hessian", span=span, n=5)).max())
    ratios = [err[0] / err[1], err[1] / err[2]]
    assert all(6 < r < 10 for r in ratios), ratios          # error ∝ span³
    # a GGN model is only first-order accurate in curvature: its error shrinks like span²
    eg = [np.abs(ls.grid(problem, w, d1, span=s, n=5) - ls.quadratic(problem, w, d1, kind="ggn", span=s, n=5)).max()
          for s in (0.1, 0.05)]
    assert 3 < eg[0] / eg[1] < 5


def test_fit_error(prob):
    problem, w = prob
    d = ls.direction(problem, w, seed=1)
    Z = ls.grid(problem, w, d, n=11)
    assert ls.fit_error(Z, Z) == 0
    assert ls.fit_error(Z, ls.quadratic(problem, w, d, kind="hessian", n=11)) > 0
    with pytest.raises(ValueError, match="share a grid"):
        ls.fit_error(Z, Z[:3])


def test_directions(prob):
    problem, w = prob
    for kind in ("random", "eigen", "ggn_eigen", "gradient"):
        assert np.linalg.norm(ls.direction(problem, w, kind)) == pytest.approx(1)
    g = problem.grad(w)
    assert np.allclose(ls.direction(problem, w, "gradient"), g / np.linalg.norm(g))
    H = oracles.H(problem, w)
    top = np.linalg.eigvalsh(H)
    for index in (0, 2):
        d = ls.direction(problem, w, "eigen", index=index)
        assert np.allclose(H @ d, top[-1 - index] * d, atol=1e-9)
    s0, s1 = problem.model.layer_slices()
    d = ls.direction(problem, w, "layer", layer=1, seed=3)
    assert not np.any(d[s0]) and np.all(d[s1] != 0)
    de = ls.direction(problem, w, "eigen", layer=0)
    Hb = cl.hessian_blocks(problem, w)[0]
    assert not np.any(de[s1]) and np.allclose(Hb @ de[s0], np.linalg.eigvalsh(Hb)[-1] * de[s0])
    f = ls.direction(problem, w, "filter", seed=4)
    for Dl, Wl in zip(problem.model.unflatten(f), problem.model.unflatten(w)):
        assert np.allclose(np.linalg.norm(Dl, axis=1), np.linalg.norm(Wl, axis=1))


def test_landscape_bad_input(prob):
    problem, w = prob
    d = ls.direction(problem, w)
    with pytest.raises(ValueError, match="zero-length direction"):
        ls.grid(problem, w, np.zeros_like(w))
    with pytest.raises(ValueError, match="n must be >= 2"):
        ls.grid(problem, w, d, n=1)
    with pytest.raises(ValueError, match="span must be > 0"):
        ls.grid(problem, w, d, span=0)
    with pytest.raises(ValueError, match="unknown direction kind"):
        ls.direction(problem, w, "sideways")
    with pytest.raises(ValueError, match="unknown curvature kind"):
        ls.quadratic(problem, w, d, kind="bfgs")
    with pytest.raises(ValueError, match="needs layer"):
        ls.direction(problem, w, "layer")
    with pytest.raises(ValueError, match="zero here"):
        ls.direction(cl.objectives.rosenbrock, np.array([1.0, 1.0]), "gradient")


@pytest.mark.parametrize("act", ["sigmoid", "relu", "softplus", "identity"])
def test_batch_losses_at_arbitrary_points_equal_single_losses(act, monkeypatch):
    problem, w = make_problem([3, 5, 4, 2], act, "bce", 7, l2=0.1)
    Ws = w + 0.3 * np.random.default_rng(0).standard_normal((9, problem.n_params))
    want = [problem.loss(v) for v in Ws]
    monkeypatch.setattr(ls, "_GRID_BYTES", 8 * 7 * 5 * 2)      # two points per chunk, last one short
    losses, accs = ls.batch_losses(problem, Ws)
    assert np.allclose(losses, want, rtol=1e-13)
    assert accs[4] == np.mean((problem.outputs(Ws[4]) > 0) == (problem.y > 0.5))


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce"])
def test_grid_of_a_single_layer_model(loss):
    problem, w = make_problem([3, 4], "tanh", loss, 6, l2=0.2)
    d1, d2 = ls.direction(problem, w, seed=1), ls.direction(problem, w, seed=2)
    Z, A = ls.grid(problem, w, d1, d2, span=0.5, n=3, accuracy=True)
    a = np.linspace(-0.5, 0.5, 3)
    assert np.allclose(Z, [[problem.loss(w + ai * d1 + aj * d2) for aj in a] for ai in a], rtol=1e-13)
    assert np.isnan(A).all() == (loss == "mse")


def test_batched_losses_reject_bad_shapes(prob):
    problem, w = prob
    with pytest.raises(ValueError, match=r"Ws must have shape \(G, 39\)"):
        ls.batch_losses(problem, np.ones((3, 5)))
    with pytest.raises(ValueError, match="C must have shape"):
        ls.affine_losses(problem, w, np.ones((39, 2)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        ls.affine_losses(problem, w, np.ones(39), [0.0, np.nan])
    losses, _ = ls.affine_losses(problem, w, np.ones(39), [0.0, 0.5])      # one direction, 1-D C
    assert np.allclose(losses, [problem.loss(w), problem.loss(w + 0.5)], rtol=1e-13)
