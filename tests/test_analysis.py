import numpy as np
import pytest

import curvlab as cl
from tests import oracles
from tests.conftest import make_problem


def test_compare_rows_against_dense_formulas():
    problem, w = make_problem([3, 5, 3], "tanh", "cross_entropy", 10)
    eta = 1e-2
    table = cl.compare(problem, w, kinds=("kflr", "diagonal"), damping=eta, k=4)
    assert [(r.kind, r.reference) for r in table] == [("kflr", "ggn"), ("diagonal", "ggn"),
                                                     ("kflr", "hessian"), ("diagonal", "hessian")]
    G, K = oracles.GGN(problem, w), cl.kflr(problem, w).to_dense()
    row = table[0]
    g = problem.grad(w)
    a, b = np.linalg.solve(K + eta * np.eye(len(g)), g), np.linalg.solve(G + eta * np.eye(len(g)), g)
    assert row.rel_frobenius == pytest.approx(np.linalg.norm(K - G) / np.linalg.norm(G), rel=1e-10)
    assert row.cosine == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), rel=1e-10)
    assert row.trace_ratio == pytest.approx(np.trace(K) / np.trace(G), rel=1e-10)
    ld = np.linalg.slogdet(K + eta * np.eye(len(g)))[1] - np.linalg.slogdet(G + eta * np.eye(len(g)))[1]
    assert row.logdet_ratio == pytest.approx(ld, rel=1e-8)
    assert 0 <= row.subspace_overlap <= 1 + 1e-12
    assert "kflr" in str(table) and "rel.Frob" in str(table)


def test_exact_approximation_scores_perfectly():
    # one sample: the KFLR blocks are the GGN blocks, so every layer error vanishes
    problem, w = make_problem([3, 5, 3], "tanh", "mse", 1)
    row = cl.compare(problem, w, kinds=("kflr", "ggn"), references=("ggn",))[0]
    assert max(row.layer_errors) < 1e-10
    self_row = cl.compare(problem, w, kinds=("ggn",), references=("ggn",), damping=0.1)[0]
    assert self_row.rel_frobenius == 0 and self_row.cosine == pytest.approx(1)
    assert self_row.subspace_overlap == pytest.approx(1) and self_row.logdet_ratio == 0


def test_single_linear_layer_kflr_is_the_hessian():
    problem, w = make_problem([4, 3], "identity", "mse", 20)
    row = cl.compare(problem, w, kinds=("kflr",), references=("hessian",))[0]
    assert row.rel_frobenius < 1e-12 and row.cosine == pytest.approx(1, abs=1e-12)


def test_logdet_is_nan_for_an_indefinite_reference():
    problem, w = make_problem([2, 6, 3], "tanh", "cross_entropy", 8, scale=2.0)
    row = cl.compare(problem, w, kinds=("ggn",), references=("hessian",), damping=0.0)[0]
    assert np.isnan(row.logdet_ratio)


def test_compare_bad_input():
    problem, w = make_problem([2, 3, 2], "tanh", "cross_entropy", 4)
    with pytest.raises(ValueError, match="unknown curvature kind"):
        cl.compare(problem, w, kinds=("kfc",))
    with pytest.raises(ValueError, match="damping"):
        cl.compare(problem, w, damping=-1)
