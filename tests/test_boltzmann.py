"""Boltzmann machines by enumeration: correlations, R{p} and the learning objective's gradient
and Hessian-vector product against autograd through the enumeration."""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, hessian, make_jvp

import curvlab as cl
from tests import oracles


def machine(**kw):
    bm = cl.BoltzmannMachine(5, T=kw.pop("T", 1.3), **kw)
    return bm, bm.init(seed=2, scale=0.7)


def test_correlations_by_their_definition():
    bm, w = machine()
    P = bm.probabilities(w)
    E = np.array([sum(w[k] * s[i] * s[j] for k, (i, j) in enumerate(zip(*bm.iu))) for s in bm.states])
    want = np.exp(-E / bm.T) / np.exp(-E / bm.T).sum()
    assert oracles.rel(P, want) < 1e-13
    C = bm.correlations(w)
    assert oracles.rel(C, np.einsum("s,si,sj->ij", want, bm.states, bm.states)) < 1e-13
    assert oracles.rel(np.diag(C), want @ bm.states) < 1e-13


@pytest.mark.parametrize("kw", [dict(), dict(on_unit=0), dict(T=0.4)])
def test_r_correlations_are_the_directional_derivative(kw, record_error):
    bm, w = machine(**kw)
    v = np.random.default_rng(1).standard_normal(bm.n_params)
    jvp = make_jvp(lambda u: anp.dot((bm.states * bm.probabilities(u)[:, None]).T, bm.states))(w)(v)[1]
    assert record_error(oracles.rel(bm.r_correlations(w, v), jvp)) < 1e-10


@pytest.mark.parametrize("kw", [dict(visible=[0, 1, 2]), dict(visible=[1, 3, 4], on_unit=0), dict()])
def test_objective_gradient_and_hvp_against_autograd(kw, record_error):
    bm, w = machine(**kw)
    rng = np.random.default_rng(3)
    data = (rng.random((12, len(bm.visible))) < 0.5).astype(float)
    G = lambda u: bm.objective(u, data)
    assert record_error(oracles.rel(bm.gradient(w, data), grad(G)(w))) < 1e-10
    v = rng.standard_normal(bm.n_params)
    assert record_error(oracles.rel(bm.hvp(w, data, v), hessian(G)(w) @ v)) < 1e-10
    obj = bm.as_objective(data)
    assert oracles.rel(cl.hvp(obj, w, v), bm.hvp(w, data, v)) < 1e-10


def test_kl_is_the_objective_up_to_the_data_entropy():
    bm, w = cl.BoltzmannMachine(3), None
    w = bm.init(1)
    data = np.array([[1, 0, 1], [1, 0, 1], [0, 1, 1]], dtype=float)
    emp = {(1, 0, 1): 2 / 3, (0, 1, 1): 1 / 3}
    P = dict(zip(map(tuple, bm.states.astype(int)), bm.probabilities(w)))
    kl = sum(q * np.log(q / P[s]) for s, q in emp.items())
    entropy = -sum(q * np.log(q) for q in emp.values())
    assert abs(bm.objective(w, data) - (kl + entropy)) < 1e-13


def test_bad_machines_and_data_are_refused():
    with pytest.raises(ValueError, match="limited to 20 units"):
        cl.BoltzmannMachine(21)
    with pytest.raises(ValueError, match="visible must list distinct units"):
        cl.BoltzmannMachine(4, visible=[0, 7])
    bm = cl.BoltzmannMachine(4, visible=[0, 1])
    with pytest.raises(ValueError, match=r"data must have shape \(M, 2\)"):
        bm.objective(bm.init(), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="0/1 states"):
        bm.objective(bm.init(), np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="T must be > 0"):
        cl.BoltzmannMachine(3, T=0.0)
