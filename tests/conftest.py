import itertools

import numpy as np
import pytest

import curvlab as cl

ERRORS = []   # (relative error, test id) for the end-of-run summary


@pytest.fixture
def record_error(request):
    def record(err):
        ERRORS.append((err, request.node.nodeid))
        return err
    return record


def pytest_terminal_summary(terminalreporter):
    if ERRORS:
        err, node = max(ERRORS)
        terminalreporter.write_line(
            f"curvlab oracle checks: {len(ERRORS)} comparisons, worst relative error {err:.2e} ({node})")


ARCHS = [[3, 2], [3, 4, 3], [2, 5, 4, 3]]
ACTIVATIONS = ["tanh", "sigmoid", "relu", "softplus", "identity"]
LOSSES = ["mse", "cross_entropy", "bce"]


def targets(loss, N, K, rng):
    if loss == "cross_entropy":
        return rng.integers(0, K, N)
    if loss == "bce":
        return (rng.random((N, K)) < 0.5).astype(float)
    return rng.standard_normal((N, K))


def make_problem(sizes, activation, loss, N, seed=0, l2=0.0, scale=0.5):
    rng = np.random.default_rng(seed)
    model = cl.MLP(sizes, activation=activation)
    X = rng.standard_normal((N, sizes[0]))
    y = targets(loss, N, sizes[-1], rng)
    problem = cl.Problem(model, loss, X, y, l2=l2)
    # random biases and weights away from the init, so every term of the curvature is non-zero
    w = model.init(seed) + scale * rng.standard_normal(model.n_params)
    return problem, w


def _cases():
    for sizes, act, loss, N in itertools.product(ARCHS, ACTIVATIONS, LOSSES, [1, 6]):
        if len(sizes) == 2 and act != "tanh":
            continue  # one Dense layer is linear whatever the activation name
        yield pytest.param((sizes, act, loss, N), id=f"{'-'.join(map(str, sizes))}-{act}-{loss}-N{N}")


CASES = list(_cases())


@pytest.fixture(params=CASES)
def case(request):
    sizes, act, loss, N = request.param
    return make_problem(sizes, act, loss, N, seed=len(sizes) + N, l2=0.0)
