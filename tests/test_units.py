"""Networks of units, feed-forward and recurrent: loss, gradient, Hv, Hessian and GGN against
autograd on a plain forward written here (a sweep over the units in topological order, or a
long unrolled relaxation converged to 1e-13), and the identities: an MLP wired as units is the
MLP; a recurrent net with its feedback at zero is the feed-forward net."""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, hessian

import curvlab as cl
from curvlab.units import RelaxationError
from tests import oracles
from tests.conftest import targets

TOL = 1e-9


def plain_loss(net, problem, steps=None):
    """E(w) by autograd: units in topological order (steps None) or `steps` relaxation sweeps."""
    n, f = net.n_units, oracles.PLAIN_ACTIVATIONS[net.act.name]

    def loss(w):
        we, b = w[:len(net.edges)], w[len(net.edges):]
        bias = dict(zip(net.computed.tolist(), [b[k] for k in range(len(net.computed))]))
        y = [problem.X[:, net.inputs.index(u)] if u in net.inputs else anp.zeros(problem.N) for u in range(n)]
        order = [u for level in net.levels for u in level] if steps is None else list(net.computed) * steps
        for it in range(1 if steps is None else steps):
            units = order if steps is None else list(net.computed)
            new = list(y)
            for u in units:
                x = bias[u] + sum(we[k] * (new if steps is None else y)[s] for k, (s, d) in enumerate(net.edges) if d == u)
                new[u] = f(x) if u not in net.outputs else x
            y = new
        z = anp.stack([y[u] for u in net.outputs], axis=1)
        return anp.mean(problem.lossfn.value(z, problem.y)) + 0.5 * problem.l2 * anp.sum(w * w)
    return loss


DAG = dict(n_units=7, inputs=[0, 1], outputs=[5, 6],
           edges=[(0, 2), (1, 2), (0, 3), (2, 3), (1, 4), (3, 4), (2, 5), (4, 5), (0, 5), (3, 6), (1, 6), (4, 6)])
FEEDBACK = [(5, 2), (6, 3), (4, 3)]


def make(activation, loss, N=5, recurrent=False, seed=0, l2=0.0):
    rng = np.random.default_rng(seed)
    edges = DAG["edges"] + (FEEDBACK if recurrent else [])
    net = cl.UnitNetwork(DAG["n_units"], edges, DAG["inputs"], DAG["outputs"], activation, tol=1e-14)
    problem = cl.Problem(net, loss, rng.standard_normal((N, 2)), targets(loss, N, 2, rng), l2=l2)
    w = net.init(seed) + 0.3 * rng.standard_normal(net.n_params)
    if recurrent:
        w[len(DAG["edges"]):len(edges)] *= 0.3                          # a contraction: it relaxes
    return problem, w


@pytest.mark.parametrize("activation,loss", [("tanh", "cross_entropy"), ("sigmoid", "mse"), ("softplus", "bce"),
                                             ("relu", "mse"), ("identity", "cross_entropy")])
def test_feed_forward_units_match_autograd(activation, loss, record_error):
    problem, w = make(activation, loss, l2=0.1)
    L = plain_loss(problem.model, problem)
    assert abs(problem.loss(w) - L(w)) < 1e-13
    assert record_error(oracles.rel(problem.grad(w), grad(L)(w))) < TOL
    H = hessian(L)(w)
    assert record_error(oracles.rel(cl.hessian(problem, w), H)) < TOL
    V = np.random.default_rng(1).standard_normal((problem.n_params, 3))
    assert record_error(oracles.rel(cl.hvp(problem, w, V), H @ V)) < TOL
    assert record_error(oracles.rel(cl.ggn(problem, w), oracles.GGN(problem, w))) < TOL
    assert oracles.rel(cl.operator(problem, w, "ggn") @ V[:, 0], cl.ggn(problem, w) @ V[:, 0]) < 1e-12


@pytest.mark.parametrize("activation,loss", [("tanh", "cross_entropy"), ("sigmoid", "mse"), ("softplus", "bce")])
def test_recurrent_units_match_autograd_through_a_long_relaxation(activation, loss, record_error):
    problem, w = make(activation, loss, recurrent=True)
    L = plain_loss(problem.model, problem, steps=150)
    assert abs(problem.loss(w) - L(w)) < 1e-12
    assert record_error(oracles.rel(problem.grad(w), grad(L)(w))) < TOL
    H = hessian(L)(w)
    assert record_error(oracles.rel(cl.hessian(problem, w), H)) < TOL
    assert record_error(oracles.rel(cl.hvp(problem, w, np.ones(problem.n_params)), H @ np.ones(problem.n_params))) < TOL


def test_a_recurrent_net_with_zero_feedback_is_the_feed_forward_net():
    ff, w = make("tanh", "cross_entropy")
    rec, _ = make("tanh", "cross_entropy", recurrent=True)
    E = len(DAG["edges"])
    wr = np.concatenate([w[:E], np.zeros(len(FEEDBACK)), w[E:]])
    idx = np.r_[0:E, E + len(FEEDBACK):len(wr)]
    assert abs(rec.loss(wr) - ff.loss(w)) < 1e-13
    assert oracles.rel(rec.grad(wr)[idx], ff.grad(w)) < 1e-12
    assert oracles.rel(cl.hessian(rec, wr)[np.ix_(idx, idx)], cl.hessian(ff, w)) < 1e-11


def test_an_mlp_wired_as_units_is_the_mlp():
    sizes = [2, 3, 2]
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((6, 2)), rng.integers(0, 2, 6)
    mlp = cl.MLP(sizes, "tanh")
    p_mlp = cl.Problem(mlp, "cross_entropy", X, y)
    w_mlp = mlp.init(0) + 0.2 * rng.standard_normal(mlp.n_params)
    # units: inputs 0, 1; hidden 2, 3, 4; outputs 5, 6; edges in the MLP's row-major weight order
    edges = [(i, 2 + h) for h in range(3) for i in range(2)] + [(2 + h, 5 + o) for o in range(2) for h in range(3)]
    net = cl.UnitNetwork(7, edges, [0, 1], [5, 6], "tanh")
    p_net = cl.Problem(net, "cross_entropy", X, y)
    W1, W2 = mlp.unflatten(w_mlp)
    w_net = np.concatenate([W1[:, :-1].ravel(), W2[:, :-1].ravel(), W1[:, -1], W2[:, -1]])
    # perm[k] = the MLP parameter that is the unit network's parameter k
    I1, I2 = mlp.unflatten(np.arange(mlp.n_params))
    perm = np.concatenate([I1[:, :-1].ravel(), I2[:, :-1].ravel(), I1[:, -1], I2[:, -1]])
    assert np.array_equal(w_net, w_mlp[perm])
    assert abs(p_net.loss(w_net) - p_mlp.loss(w_mlp)) < 1e-14
    assert oracles.rel(p_net.grad(w_net), p_mlp.grad(w_mlp)[perm]) < 1e-13
    assert oracles.rel(cl.hessian(p_net, w_net), cl.hessian(p_mlp, w_mlp)[np.ix_(perm, perm)]) < 1e-12
    assert oracles.rel(cl.ggn(p_net, w_net), cl.ggn(p_mlp, w_mlp)[np.ix_(perm, perm)]) < 1e-12


def test_relaxations_converge_geometrically_and_r_relaxation_takes_no_longer():
    problem, w = make("tanh", "mse", recurrent=True)
    from curvlab import units
    tr = units.trace(problem.model, w, problem.X)
    e = units._output_seed(problem.model, tr.y.shape, problem.lossfn.dz(tr.y[:, problem.model.outputs], problem.y))
    _, adjoint_steps = units._sweep_back(problem.model, tr, e)
    _, _, r_steps = units._sweep_forward(problem.model, tr, np.ones_like(tr.y))
    assert tr.steps > 5 and r_steps <= 2 * tr.steps and adjoint_steps <= 2 * tr.steps


def test_bad_wiring_and_a_relaxation_that_cannot_converge_are_named():
    with pytest.raises(ValueError, match="goes into input unit 0"):
        cl.UnitNetwork(3, [(1, 0)], [0], [2])
    with pytest.raises(ValueError, match="names unit 5, outside 0..2"):
        cl.UnitNetwork(3, [(0, 5)], [0], [2])
    with pytest.raises(ValueError, match=r"edge 1 \(0, 2\) is listed twice"):
        cl.UnitNetwork(3, [(0, 2), (0, 2)], [0], [2])
    with pytest.raises(ValueError, match="both inputs and outputs"):
        cl.UnitNetwork(3, [(0, 2)], [0, 2], [2])
    net = cl.UnitNetwork(4, [(0, 1), (1, 2), (2, 1), (2, 3)], [0], [3], "identity", max_iter=200)
    problem = cl.Problem(net, "mse", np.ones((2, 1)), np.zeros((2, 1)))
    w = np.array([1.0, 1.0, 1.5, 1.0, 0.0, 0.0, 0.0])      # loop 1 → 2 → 1 of gain 1.5: radius √1.5
    with pytest.raises(RelaxationError, match=r"spectral radius .* is 1.22 \(≥ 1"):
        problem.grad(w)
    with pytest.raises(TypeError, match="needs a layered model"):
        cl.kflr(cl.Problem(make("tanh", "mse")[0].model, "mse", np.zeros((2, 2)), np.zeros((2, 2))),
                make("tanh", "mse")[1])
