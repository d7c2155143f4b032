import tracemalloc

import numpy as np
import pytest

import curvlab as cl
from tests.conftest import make_problem


@pytest.fixture
def small_budget():
    old = cl.set_memory_budget(64 * 2**10)   # 64 KiB
    yield
    cl.set_memory_budget(old)


def test_dense_builds_over_budget_refuse_before_allocating(small_budget):
    problem, w = make_problem([10, 20, 3], "tanh", "cross_entropy", 50)   # P = 283: 640 KB dense
    builders = [cl.hessian, cl.ggn, cl.fisher, lambda p, v: cl.kflr(p, v).to_dense()]
    for build in builders:
        tracemalloc.start()
        with pytest.raises(cl.DenseTooLargeError, match=r"283 x 283.*budget.*set_memory_budget"):
            build(problem, w)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 8 * 283 * 283 / 2, "refused only after allocating"
    assert "cl.operator(problem, w, 'hessian')" in str(pytest.raises(
        cl.DenseTooLargeError, cl.hessian, problem, w).value)


def test_products_still_work_over_budget(small_budget):
    problem, w = make_problem([10, 20, 3], "tanh", "cross_entropy", 50)
    op = cl.operator(problem, w, "hessian")
    assert op.matvec(np.ones(problem.n_params)).shape == (problem.n_params,)


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        cl.set_memory_budget(0)


def test_negative_or_nan_damping_is_refused():
    problem, w = make_problem([2, 3, 2], "tanh", "cross_entropy", 4)
    K = cl.kflr(problem, w)
    for bad in (-1e-3, np.nan):
        with pytest.raises(ValueError, match="damping must be a finite number >= 0"):
            K.solve(np.ones(problem.n_params), damping=bad)


def test_unknown_names_are_refused():
    problem, w = make_problem([2, 3, 2], "tanh", "cross_entropy", 4)
    with pytest.raises(ValueError, match="unknown fisher kind 'exact'"):
        cl.fisher(problem, w, kind="exact")
    with pytest.raises(ValueError, match="kind 'kfac' has no matrix-free product.*as_linear_operator"):
        cl.operator(problem, w, "kfac")
    with pytest.raises(ValueError, match="unknown curvature kind 'gnn'"):
        cl.operator(problem, w, "gnn")
    with pytest.raises(ValueError, match="unknown ggnvp method"):
        cl.ggnvp(problem, w, np.ones(problem.n_params), method="fast")
    with pytest.raises(ValueError, match="samples must be >= 1"):
        cl.fisher(problem, w, "mc", samples=0)
