import numpy as np
import pytest
from autograd import hessian as ag_hessian

import curvlab as cl
from tests import oracles
from tests.conftest import make_problem

TOL = 1e-10


def test_hessian_matches_autograd(case, record_error):
    problem, w = case
    err = record_error(oracles.rel(cl.hessian(problem, w), oracles.H(problem, w)))
    assert err < TOL


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_hessian_includes_l2(l2):
    problem, w = make_problem([2, 4, 3], "softplus", "cross_entropy", 5, l2=l2)
    assert oracles.rel(cl.hessian(problem, w), oracles.H(problem, w)) < TOL


def test_hessian_is_symmetric_and_chunking_does_not_matter(monkeypatch):
    from curvlab.curvature import _dense
    problem, w = make_problem([3, 6, 5, 3], "tanh", "cross_entropy", 9)
    H1 = cl.hessian(problem, w)
    monkeypatch.setattr(_dense, "_CHUNK_BYTES", 1)          # one row per matrix product
    H2 = cl.hessian(problem, w)
    assert np.array_equal(H1, H1.T)
    assert oracles.rel(H2, H1) < 1e-13


def test_single_layer_hessian_equals_ggn_for_every_loss():
    # A model linear in its parameters has no second-order residual: H = GGN exactly.
    for loss in ["mse", "cross_entropy", "bce"]:
        problem, w = make_problem([4, 3], "tanh", loss, 7)
        assert oracles.rel(cl.hessian(problem, w), cl.ggn(problem, w)) < TOL


def test_deep_linear_net_is_not_linear_in_parameters():
    # DESIGN: a deep linear net's cross-layer Hessian blocks differ from the GGN's,
    # while its diagonal blocks agree (f'' = 0).
    problem, w = make_problem([3, 4, 2], "identity", "mse", 6)
    H, G = cl.hessian(problem, w), cl.ggn(problem, w)
    s0, s1 = problem.model.layer_slices()
    assert oracles.rel(H[s0, s1], G[s0, s1]) > 1e-3
    assert oracles.rel(H[s0, s0], G[s0, s0]) < TOL
    assert oracles.rel(H[s1, s1], G[s1, s1]) < TOL


def test_generic_objectives_against_closed_forms():
    x, y = 0.3, -0.7
    H = cl.hessian(cl.objectives.rosenbrock, np.array([x, y]))
    exact = np.array([[2 - 400 * (y - x ** 2) + 800 * x ** 2, -400 * x], [-400 * x, 200]])
    assert oracles.rel(H, exact) < 1e-14
    f, A, c = cl.objectives.make_quadratic(condition=50.0)
    assert oracles.rel(cl.hessian(f, np.array([1.0, 2.0])), A) < 1e-14
    assert abs(f(c)) == 0.0
    assert np.array_equal(f.ggn(c), A)


def test_logistic_regression_hessian_closed_form():
    f, x, t = cl.objectives.make_logistic_regression(n=50, seed=3, l2=0.1)
    w = np.array([0.4, -0.2])
    s = 1 / (1 + np.exp(-(w[0] * x + w[1])))
    Phi = np.stack([x, np.ones_like(x)], 1)
    exact = Phi.T @ (Phi * (s * (1 - s))[:, None]) / len(x) + 0.1 * np.eye(2)
    assert oracles.rel(cl.hessian(f, w), exact) < 1e-12


def test_beale_hessian_matches_autograd():
    w = np.array([1.0, 0.3])
    assert oracles.rel(cl.hessian(cl.objectives.beale, w), ag_hessian(cl.objectives.beale)(w)) < 1e-14


def test_diagonal_blocks_are_symmetrised_tile_by_tile():
    from curvlab.curvature.blocks import _symmetrise_diagonal_blocks
    A = np.random.default_rng(0).standard_normal((11, 11))
    out = A.copy()
    _symmetrise_diagonal_blocks(out, [slice(0, 7), slice(7, 11)], tile=3)
    want = A.copy()
    for s in (slice(0, 7), slice(7, 11)):
        want[s, s] = 0.5 * (A[s, s] + A[s, s].T)
    assert np.array_equal(out, want)


def test_hessian_of_a_deep_net_matches_autograd():
    # Four weight layers: the input term for l > m + 1 (a dense ∂a_{l-1}/∂s_m) in every position.
    problem, w = make_problem([3, 4, 5, 4, 2], "softplus", "bce", 5, scale=1.0)
    assert oracles.rel(cl.hessian(problem, w), oracles.H(problem, w)) < TOL


def test_progress_bar_on_request(capsys):
    problem, w = make_problem([3, 4, 2], "tanh", "mse", 5)
    H = cl.hessian(problem, w, progress=True)
    assert "hessian" in capsys.readouterr().err              # tqdm writes its bar to stderr
    assert np.array_equal(H, cl.hessian(problem, w, progress=False))
    assert capsys.readouterr().err == ""
