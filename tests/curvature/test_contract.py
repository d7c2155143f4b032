"""The one curvature contract and the registry: every registered kind's object keeps the
`Curvature` contract against its own dense matrix, its registered capabilities say what it does,
and a kind registered from outside the package reaches every consumer."""

import numpy as np
import pytest

import curvlab as cl
from curvlab.curvature import registry
from tests import oracles

ALL_KINDS = list(cl.kinds())


@pytest.fixture(scope="module")
def small():
    X, y = cl.datasets.spirals(n=7, classes=3, seed=1)
    model = cl.MLP([2, 4, 3], activation="tanh")
    problem = cl.Problem(model, "cross_entropy", X, y, l2=0.01)
    return problem, model.init(seed=2)


def test_registry_lists_the_kinds_in_a_fixed_order_with_their_structures():
    # the order is fixed by curvlab/curvature/__init__.py, not by which module imports first
    assert ALL_KINDS[:9] == ["hessian", "ggn", "fisher", "empirical_fisher", "mc_fisher", "kfac",
                             "kflr", "kfra", "diagonal"]
    assert set(cl.kinds(structure="kronecker")) == {"kfac", "kflr", "kfra", "kfoc", "tnt",
                                                    "shampoo"}
    assert set(cl.kinds(structure="diagonal")) == {"diagonal", "diag_hessian", "diag_ggn_mc"}
    assert set(cl.kinds(structure="blocks")) == {"ekfac", "unitwise"}
    assert set(cl.kinds(sampled=True)) == {"mc_fisher", "kfac", "diag_ggn_mc"}
    assert set(cl.kinds(matrix_free=True)) == {"hessian", "ggn", "fisher", "empirical_fisher"}
    assert set(cl.kinds(needs_problem=False)) == {"hessian", "ggn", "fisher"}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_keeps_the_contract_against_its_dense_matrix(small, kind):
    problem, w = small
    P = problem.n_params
    C = cl.matrix(problem, w, kind)
    assert isinstance(C, cl.Curvature) and C.shape == (P, P)
    M = C.to_dense()
    assert np.allclose(M, M.T, atol=1e-14 * np.abs(M).max())
    rng = np.random.default_rng(0)
    v, V = rng.standard_normal(P), rng.standard_normal((P, 3))
    assert oracles.rel(C @ v, M @ v) < 1e-12 and oracles.rel(C @ V, M @ V) < 1e-12
    assert oracles.rel(C.as_linear_operator().matmat(V), M @ V) < 1e-12
    x = C.solve(V, damping=0.3)
    assert oracles.rel((M + 0.3 * np.eye(P)) @ x, V) < 1e-9
    assert oracles.rel(C.eigvalsh(), np.linalg.eigvalsh(M)) < 1e-9
    for sl, B in zip(problem.model.layer_slices(), C.blocks()):
        assert oracles.rel(B, M[sl, sl]) < 1e-12
    with pytest.raises(ValueError, match=rf"v must have shape \({P},\)"):
        C @ np.ones(P + 1)
    with pytest.raises(ValueError, match="damping must be a finite number >= 0"):
        C.solve(v, damping=-1.0)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_the_registered_capabilities_say_what_the_kind_does(small, kind):
    problem, w = small
    entry = registry.REGISTRY[kind]
    C = cl.matrix(problem, w, kind)
    M = C.to_dense()
    slices = problem.model.layer_slices()
    if entry.structure != "dense":                  # block-diagonal over the layers
        off = M.copy()
        for sl in slices:
            off[sl, sl] = 0
        assert not off.any()
    if entry.structure == "kronecker":
        for (A, S), sl in zip(C.factors, slices):
            assert oracles.rel(np.kron(S, A) + problem.l2 * np.eye(sl.stop - sl.start),
                               M[sl, sl]) < 1e-12
    if entry.structure == "diagonal":
        assert not (M - np.diag(np.diag(M))).any()
    if entry.matrix_free:
        V = np.random.default_rng(1).standard_normal((problem.n_params, 2))
        assert oracles.rel(cl.operator(problem, w, kind).matmat(V), M @ V) < 1e-10
    other = cl.matrix(problem, w, kind, seed=5).to_dense()
    assert (oracles.rel(other, M) > 1e-6) == entry.sampled
    if entry.optimizer:
        # well damped, every curvature method descends
        tr = cl.optim.minimize(problem, w, entry.optimizer, steps=2, damping=1.0)
        assert len(tr) == 3 and tr.losses[-1] < tr.losses[0]


@pytest.mark.parametrize("kind", [k for k in ALL_KINDS
                                  if registry.REGISTRY[k].structure != "dense"])
def test_spectra_of_structured_kinds_never_form_the_matrix(small, kind, monkeypatch):
    problem, w = small
    M = cl.matrix(problem, w, kind).to_dense()
    for cls in (cl.Curvature, cl.KroneckerFactored, cl.Diagonal, cl.curvature.BlockDiagonal):
        monkeypatch.setattr(cls, "to_dense", lambda self: pytest.fail("formed P x P"))
    vals = cl.spectrum(problem, w, kind)
    assert oracles.rel(vals, np.linalg.eigvalsh(M)) < 1e-9
    top, vecs = cl.spectrum(problem, w, kind, k=3, vectors=True)
    assert oracles.rel(M @ vecs, vecs * top) < 1e-9
    sl = problem.model.layer_slices()[1]
    last = cl.spectrum(problem, w, kind, layer=1, k=2, which="SA", vectors=True)
    assert oracles.rel(last[0], np.linalg.eigvalsh(M[sl, sl])[:2]) < 1e-9
    assert oracles.rel(M[sl, sl] @ last[1], last[1] * last[0]) < 1e-9


def _toy(problem, w, scale=1.0):
    """A kind defined outside the package: diag(1, 2, ..., P) · scale."""
    d = scale * np.arange(1.0, problem.n_params + 1)
    return cl.Diagonal(d, problem.l2, "toy", problem.model.layer_slices())


def test_a_kind_registered_from_outside_reaches_every_consumer(small):
    problem, w = small
    P = problem.n_params
    cl.register("toy", _toy, "toy: diag(1..P)", "this test", structure="diagonal",
                optimizer="toy", references=("arange",))
    try:
        assert "toy" in cl.KINDS and cl.kind_table()[-1][:4] == ("toy", "toy: diag(1..P)",
                                                                  "this test", "diagonal")
        assert "toy" in str(cl.kind_table())
        expect = np.arange(1.0, P + 1) + problem.l2
        assert oracles.rel(cl.spectrum(problem, w, "toy"), expect) < 1e-15
        assert oracles.rel(cl.spectrum(problem, w, "toy", k=2), expect[-2:]) < 1e-15
        assert oracles.rel(cl.matrix(problem, w, "toy", scale=2.0).eigvalsh(),
                           2 * np.arange(1.0, P + 1) + problem.l2) < 1e-15
        with pytest.raises(TypeError, match=r"takes no option \['power'\].*\['scale'\]"):
            cl.matrix(problem, w, "toy", power=2)
        row = cl.compare(problem, w, kinds="toy", references="ggn")[0]
        G = cl.ggn(problem, w)
        assert row.kind == "toy" and abs(row.trace_ratio - expect.sum() / np.trace(G)) < 1e-12
        d1 = cl.landscape.direction(problem, w, "random", seed=0)
        q = cl.landscape.quadratic(problem, w, d1, kind="toy", span=0.5, n=5)
        g, a = problem.grad(w), np.linspace(-0.5, 0.5, 5)
        curv = (d1 * expect) @ d1
        assert oracles.rel(q, problem.loss(w) + a * (g @ d1) + 0.5 * a * a * curv) < 1e-12
        assert "toy" in cl.optim.method_names() and cl.optim.needs_problem("toy")
        tr = cl.optim.minimize(problem, w, "toy", steps=1, lr=1.0, damping=0.0)
        assert oracles.rel(tr.ws[1], w - g / expect) < 1e-12
    finally:
        cl.unregister("toy")
    assert "toy" not in cl.KINDS and "toy" not in cl.optim.method_names()
    with pytest.raises(ValueError, match="unknown curvature kind 'toy'"):
        cl.spectrum(problem, w, "toy")


def test_register_and_kinds_refuse_bad_input():
    with pytest.raises(ValueError, match="structure of kind 'bad' must be one of"):
        cl.register("bad", _toy, "x", structure="sparse")
    with pytest.raises(TypeError, match="build for kind 'bad' must be callable"):
        cl.register("bad", "not callable", "x")
    with pytest.raises(ValueError, match="identifier-like"):
        cl.register("two words", _toy, "x")
    with pytest.raises(TypeError, match="filters by capability \\['colour'\\]"):
        cl.kinds(colour="red")
    with pytest.raises(KeyError, match="no curvature kind 'nope'"):
        cl.unregister("nope")
    assert "bad" not in cl.KINDS


def test_kind_table_prints_a_table_and_returns_rows():
    table = cl.kind_table()
    lines = str(table).splitlines()
    assert lines[0].split()[:5] == ["kind", "structure", "matrix-free", "sampled", "optimiser"]
    assert set(lines[1]) <= {"-", " "}
    assert [line.split()[0] for line in lines[2:]] == ALL_KINDS
    assert all(len(row) == len(table.columns) for row in table)
    assert dict((r[0], r[3]) for r in table)["kflr"] == "kronecker"
    assert "<table>" in table._repr_html_() and "kflr" in table._repr_html_()


def test_public_api_is_deliberate():
    assert len(cl.__all__) == len(set(cl.__all__))
    missing = [name for name in cl.__all__ if not hasattr(cl, name)]
    assert not missing
    design = ["MLP", "Sequential", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "Dense",
              "Problem", "hessian", "ggn", "fisher", "hessian_blocks", "kfac", "kflr", "kfra",
              "hvp", "ggnvp", "operator", "spectrum", "slq_density", "hutchinson", "compare",
              "landscape", "optim", "ekfac", "kfoc", "diag_hessian", "sqrt_ggn",
              "per_sample_grads", "ntk", "matrix", "from_torch", "to_torch", "Loss",
              "from_torch_loss", "UnitNetwork", "BoltzmannMachine", "perturbation", "register",
              "kind_table", "datasets"]
    assert [name for name in design if name not in cl.__all__] == []
