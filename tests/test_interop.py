"""Your own matrix or loss in curvlab, and the library's answers to ordinary mistakes."""

import autograd.numpy as anp
import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import curvlab as cl
from tests import oracles
from tests.conftest import make_problem


@pytest.fixture(scope="module")
def small():
    problem, w = make_problem([3, 4, 3], "tanh", "cross_entropy", 6)
    return problem, w


# -- outside matrices ----------------------------------------------------------------------

def _forms(M):
    return {"array": M, "operator": aslinearoperator(M), "callable": lambda v: M @ v}


def test_compare_takes_an_array_an_operator_and_a_callable_alike(small):
    problem, w = small
    M = cl.kflr(problem, w).to_dense() + 0.01 * np.eye(problem.n_params)
    rows = {}
    for form, obj in _forms(M).items():
        table = cl.compare(problem, w, kinds="kflr", references="ggn", extra={"mine": obj})
        rows[form] = [r for r in table if r.kind == "mine"][0]
    ref = rows["array"]
    for form, row in rows.items():
        for field in ("rel_frobenius", "cosine", "subspace_overlap", "trace_ratio", "logdet_ratio"):
            assert getattr(row, field) == pytest.approx(getattr(ref, field), rel=1e-12), (form, field)
    # and the row equals the kind's own row when M is that kind's matrix
    same = cl.compare(problem, w, kinds="kflr", references="ggn",
                      extra={"kflr again": cl.kflr(problem, w).to_dense()})
    assert same[1].rel_frobenius == pytest.approx(same[0].rel_frobenius, rel=1e-12)


def test_outside_matrices_of_the_wrong_size_are_refused_with_both_numbers(small):
    problem, w = small
    P = problem.n_params
    for bad in (np.eye(P + 1), aslinearoperator(np.eye(P - 1))):
        with pytest.raises(ValueError, match=rf"is {bad.shape[0]} x {bad.shape[0]} but the problem has P = {P}"):
            cl.compare(problem, w, kinds="kflr", references="ggn", extra={"mine": bad})
    with pytest.raises(ValueError, match="not symmetric"):
        cl.landscape.quadratic(problem, w, np.ones(P), kind=np.triu(np.ones((P, P))), n=3)
    with pytest.raises(ValueError, match="pass n=P"):
        cl.spectrum(lambda v: v)                         # a callable says nothing of its size


def test_spectrum_of_an_outside_matrix_equals_its_dense_eigenvalues():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((300, 300))
    M = A @ A.T
    want = np.linalg.eigvalsh(M)
    assert oracles.rel(cl.spectrum(M), want) < 1e-12
    assert oracles.rel(cl.spectrum(aslinearoperator(M), k=4), want[-4:]) < 1e-9     # Lanczos
    assert oracles.rel(cl.spectrum(lambda v: M @ v, k=3, n=300, which="SA"), want[:3]) < 1e-9


def test_landscape_and_damping_take_an_outside_matrix(small):
    problem, w = small
    G = cl.ggn(problem, w)
    d1 = cl.landscape.direction(problem, w, seed=1)
    want = cl.landscape.quadratic(problem, w, d1, kind="ggn", n=5)
    for obj in _forms(G).values():
        assert oracles.rel(cl.landscape.quadratic(problem, w, d1, kind=obj, n=5), want) < 1e-12
        p = cl.damping.damped_direction(problem, w, kind=obj, damping=0.1)
        assert oracles.rel(p, cl.damping.damped_direction(problem, w, kind="ggn", damping=0.1)) < 1e-10
    assert oracles.rel(cl.spectrum(problem, w, kind=G), np.linalg.eigvalsh(G)) < 1e-12


# -- custom losses ---------------------------------------------------------------------------

def plain_ce(z, y):
    m = anp.max(z, axis=1, keepdims=True)
    return anp.log(anp.sum(anp.exp(z - m), axis=1)) + m[:, 0] - z[np.arange(len(y)), y]


def plain_mse(z, y):
    return 0.5 * anp.sum((z - y) ** 2, axis=1)


@pytest.mark.parametrize("loss,fn", [("cross_entropy", plain_ce), ("mse", plain_mse)])
def test_custom_loss_reproduces_the_built_in_one(loss, fn, record_error):
    builtin, w = make_problem([3, 5, 4, 3], "softplus", loss, 7)
    mine = cl.Problem(builtin.model, cl.Loss(fn), builtin.X, builtin.y)
    assert abs(mine.loss(w) - builtin.loss(w)) < 1e-13
    checks = [(cl.hessian, "hessian"), (cl.ggn, "ggn"),
              (lambda p, v: cl.kflr(p, v).to_dense(), "kflr"), (lambda p, v: cl.kfra(p, v).to_dense(), "kfra"),
              (lambda p, v: cl.hvp(p, v, np.ones(p.n_params)), "hvp"), (cl.diag_ggn, "diag_ggn")]
    for f, name in checks:
        assert record_error(oracles.rel(f(mine, w), f(builtin, w))) < 1e-12, name


def test_a_new_convex_loss_gets_its_gauss_newton_matrix(record_error):
    # A smoothed (softplus) hinge on every output: convex, not one of curvlab's losses.
    def soft_hinge(z, y):
        return anp.sum(anp.logaddexp(0.0, 1.0 - y * z), axis=1)
    base, w = make_problem([3, 4, 2], "tanh", "mse", 6)
    y = np.sign(base.y)
    problem = cl.Problem(base.model, cl.Loss(soft_hinge), base.X, y)
    assert record_error(oracles.rel(cl.ggn(problem, w), oracles.GGN(problem, w))) < 1e-10
    assert record_error(oracles.rel(cl.hessian(problem, w), oracles.H(problem, w))) < 1e-10
    assert oracles.rel(cl.kflr(problem, w).blocks()[1], cl.ggn_blocks(problem, w)[1]) < 1.0


def test_a_non_convex_loss_says_which_quantities_need_a_factor_of_B():
    def cauchy(z, y):
        return anp.sum(anp.log1p((z - y) ** 2), axis=1)
    base, w = make_problem([3, 4, 2], "tanh", "mse", 6)
    problem = cl.Problem(base.model, cl.Loss(cauchy), base.X, 3 * base.y)
    assert oracles.rel(cl.ggn(problem, w), oracles.GGN(problem, w)) < 1e-10        # still exact
    with pytest.raises(ValueError, match="indefinite.*kflr, diag_ggn"):
        cl.kflr(problem, w)
    with pytest.raises(ValueError, match="true Fisher needs the model's distribution"):
        cl.fisher(problem, w, "true")
    with pytest.raises(ValueError, match="has no sampler.*sampler=lambda z, rng"):
        cl.fisher(problem, w, "mc")
    sampled = cl.Problem(base.model, cl.Loss(cauchy, sampler=lambda z, rng: z + rng.standard_cauchy(z.shape)),
                         base.X, base.y)
    assert cl.fisher(sampled, w, "mc", samples=3).shape == (problem.n_params,) * 2
    with pytest.raises(ValueError, match="one loss per sample"):
        cl.Problem(base.model, cl.Loss(lambda z, y: anp.sum(z)), base.X, base.y).loss(w)
    with pytest.raises(TypeError, match=r"cl.Loss\(fn\)"):
        cl.Loss()


# -- manners -----------------------------------------------------------------------------------

def test_string_class_labels_are_refused_by_name():
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match="y must hold integer class labels 0..1, got dtype <U3"):
        cl.Problem(cl.MLP([2, 2]), "cross_entropy", X, ["cat", "dog", "cat"])


def test_compare_takes_one_kind_as_a_string_and_refuses_an_array_kind(small):
    problem, w = small
    table = cl.compare(problem, w, kinds="kflr", references="ggn")
    assert [r.kind for r in table] == ["kflr"]
    with pytest.raises(TypeError, match=r"pass your own matrix as extra=\{'name': M\}"):
        cl.compare(problem, w, kinds=np.eye(problem.n_params))
    with pytest.raises(TypeError, match="extra="):
        cl.compare(problem, w, kinds=["kflr", np.eye(problem.n_params)])


def test_per_layer_activations():
    model = cl.MLP([2, 3, 4, 1], activation=["tanh", "relu"])
    assert [l.act.name for l in model.layers] == ["tanh", "relu", "identity"]
    with pytest.raises(ValueError, match="2 hidden layers but 1 activations"):
        cl.MLP([2, 3, 4, 1], activation=["tanh"])


def test_newton_damping_damps_or_raises(small):
    problem, w = small
    damped = cl.optim.minimize(problem, w, "newton", steps=1, damping=1e-2)
    explicit = cl.optim.minimize(problem, w, "newton", steps=1, damping=1e-2, variant="damped")
    plain = cl.optim.minimize(problem, w, "newton", steps=1)
    assert np.array_equal(damped.ws, explicit.ws) and not np.allclose(damped.ws, plain.ws)
    with pytest.raises(ValueError, match="variant='plain' takes no damping"):
        cl.optim.minimize(problem, w, "newton", steps=1, damping=1e-2, variant="plain")


def test_compare_shows_progress_on_request(small, capsys):
    problem, w = small
    cl.compare(problem, w, kinds="kflr", references="ggn", progress=True)
    assert "compare" in capsys.readouterr().err


def test_comparison_exports(small):
    problem, w = small
    table = cl.compare(problem, w, kinds=("kflr", "kfra"), references="ggn")
    md = table.to_markdown()
    assert md.count("\n") == 4 and "| kflr | ggn |" in md
    csv = table.to_csv()
    assert csv.splitlines()[0].startswith("kind,reference,rel_frobenius") and len(csv.splitlines()) == 3
    rec = table.to_records()
    assert rec[0]["rel_frobenius"] == table[0].rel_frobenius
    try:                                   # pandas is optional: either a DataFrame or a clear error
        import pandas as pd
    except ImportError:
        with pytest.raises(ImportError, match="needs pandas"):
            table.to_pandas()
    else:
        assert list(table.to_pandas()["kind"]) == ["kflr", "kfra"] and isinstance(table.to_pandas(), pd.DataFrame)


def test_result_objects_print_briefly(small):
    problem, w = small
    h = cl.hutchinson(cl.operator(problem, w, "ggn"), samples=50)
    assert "<array" in repr(h) and len(repr(h)) < 200
    tr = cl.optim.minimize(problem, w, "gd", steps=30, lr=0.1)
    assert len(repr(tr)) < 200 and "gd" in repr(tr)
    cg = cl.linalg.cg(cl.make_ggnvp(problem, w), problem.grad(w), maxiter=40)
    assert len(repr(cg)) < 300 and "iterations=" in repr(cg)
