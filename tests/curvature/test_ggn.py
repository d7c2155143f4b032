import numpy as np

import curvlab as cl
from tests import oracles
from tests.conftest import make_problem

TOL = 1e-10


def test_ggn_matches_autograd_jacobians(case, record_error):
    problem, w = case
    err = record_error(oracles.rel(cl.ggn(problem, w), oracles.GGN(problem, w)))
    assert err < TOL


def test_ggn_is_psd_even_where_hessian_is_not():
    problem, w = make_problem([2, 6, 3], "tanh", "cross_entropy", 8, scale=2.0)
    assert np.linalg.eigvalsh(cl.hessian(problem, w)).min() < -1e-6
    assert np.linalg.eigvalsh(cl.ggn(problem, w)).min() > -1e-12


def test_ggn_with_l2():
    problem, w = make_problem([2, 3, 2], "sigmoid", "bce", 4, l2=0.25)
    assert oracles.rel(cl.ggn(problem, w), oracles.GGN(problem, w)) < TOL


def test_gram_route_matches_autograd_jacobians(case, record_error):
    # Lin's MᵀM route, kept as an independent second way to build G.
    from curvlab.curvature.ggn import gram_ggn
    problem, w = case
    assert record_error(oracles.rel(gram_ggn(problem, w), oracles.GGN(problem, w))) < TOL


def test_ggn_is_exactly_symmetric_and_chunking_does_not_matter(monkeypatch):
    from curvlab.curvature import _dense
    problem, w = make_problem([3, 6, 5, 3], "tanh", "cross_entropy", 9, l2=0.1)
    G1 = cl.ggn(problem, w)
    monkeypatch.setattr(_dense, "_CHUNK_BYTES", 1)          # one row per matrix product
    assert np.array_equal(G1, G1.T)
    assert oracles.rel(cl.ggn(problem, w), G1) < 1e-13
