import pytest

import curvlab as cl
from tests import oracles
from tests.conftest import make_problem

TOL = 1e-10


def test_hessian_blocks_match_slices_of_autograd_hessian(case, record_error):
    problem, w = case
    H = oracles.H(problem, w)
    for got, want in zip(cl.hessian_blocks(problem, w), oracles.blocks(H, problem.model)):
        assert record_error(oracles.rel(got, want)) < TOL


def test_ggn_blocks_match_slices_of_oracle_ggn(case):
    problem, w = case
    G = oracles.GGN(problem, w)
    for got, want in zip(cl.ggn_blocks(problem, w), oracles.blocks(G, problem.model)):
        assert oracles.rel(got, want) < TOL


@pytest.mark.parametrize("act", ["relu", "identity"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce"])
def test_piecewise_linear_hessian_blocks_equal_ggn_blocks(act, loss):
    problem, w = make_problem([3, 5, 4, 3], act, loss, 8)
    for Hb, Gb in zip(cl.hessian_blocks(problem, w), cl.ggn_blocks(problem, w)):
        assert oracles.rel(Hb, Gb) < TOL


def test_smooth_activation_blocks_differ_from_ggn_blocks():
    # The f'' term is what separates them (so the previous test can fail).
    problem, w = make_problem([3, 5, 3], "tanh", "cross_entropy", 8, scale=1.5)
    Hb, Gb = cl.hessian_blocks(problem, w)[0], cl.ggn_blocks(problem, w)[0]
    assert oracles.rel(Hb, Gb) > 1e-3


def test_blocks_include_l2():
    problem, w = make_problem([2, 4, 2], "softplus", "mse", 3, l2=0.5)
    H = oracles.H(problem, w)
    for got, want in zip(cl.hessian_blocks(problem, w), oracles.blocks(H, problem.model)):
        assert oracles.rel(got, want) < TOL
