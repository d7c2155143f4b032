"""The zoo: EKFAC, KFOC, TNT, Shampoo, the unit-wise Fisher, diagonals, the square root of the
GGN, the NTK, per-sample gradients and ViViT — each against its definition computed densely from
autograd's per-sample quantities, the identities the sources state, and BackPACK / curvlinops
where they compute the same thing."""

import numpy as np
import pytest
from autograd import jacobian

import curvlab as cl
from curvlab.curvature.kfoc import rearrange
from tests import oracles
from tests.conftest import make_problem
from tests.curvature.test_conv import make_conv_problem

TOL = 1e-10
NEW_KINDS = ["ekfac", "kfoc", "tnt", "shampoo", "unitwise", "diag_hessian", "diag_ggn_mc"]


@pytest.fixture(autouse=True)
def torch_float64():
    """The torch tests here need float64; restore torch's default dtype afterwards."""
    import torch
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def mlp():
    return make_problem([3, 5, 4, 3], "tanh", "cross_entropy", 6, l2=0.0)


def conv():
    return make_conv_problem([cl.Conv2d(2, 3, 3, padding=1, activation="tanh"), cl.MaxPool2d(2),
                              cl.Flatten(), cl.Dense(12, 3)], (2, 4, 4), "cross_entropy", 4)


NETS = {"mlp": mlp, "conv": conv}


def per_sample_gradient_matrices(problem, w, seeds=None):
    """Autograd's per-sample gradient matrices of each layer: seeds None → ∇ℓₙ at the data labels
    (N, ...); else the rows Jₙᵀ cₙ,ᵣ for the columns of √B (R, N, ...)."""
    plain = oracles.Plain(problem) if len(problem.model.input_shape) == 3 else problem
    if seeds is None:
        rows = oracles.per_sample_grads(plain, w)[None]
    else:
        J = oracles.output_jacobian(plain, w)                                # (N, K, P)
        C = problem.lossfn.sqrt_hessian(problem.outputs(w), problem.y)      # (N, K, R)
        rows = np.einsum("nkp,nkr->rnp", J, C)
    return [rows[:, :, sl].reshape(rows.shape[:2] + layer.shape)
            for sl, layer in zip(problem.model.layer_slices(), problem.model.layers)]


def exact_ggn(problem, w):
    return oracles.GGN(oracles.Plain(problem) if len(problem.model.input_shape) == 3 else problem, w)


# -- every kind behaves as a curvature matrix ---------------------------------------------------

@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("kind", NEW_KINDS)
def test_new_kinds_have_the_whole_interface(kind, net):
    problem, w = NETS[net]()
    C = cl.matrix(problem, w, kind)
    M = C.to_dense()
    v = np.random.default_rng(0).standard_normal((problem.n_params, 2))
    assert np.allclose(M, M.T, atol=1e-12 * np.abs(M).max())
    assert oracles.rel(C @ v, M @ v) < 1e-12
    assert oracles.rel(C.solve(v, 0.1), np.linalg.solve(M + 0.1 * np.eye(len(M)), v)) < 1e-9
    assert oracles.rel(C.eigvalsh(), np.linalg.eigvalsh(M)) < 1e-9
    for got, sl in zip(C.blocks(), problem.model.layer_slices()):
        assert oracles.rel(got, M[sl, sl]) < 1e-12
    row = cl.compare(problem, w, kinds=kind, references="ggn")[0]
    assert row.kind == kind and np.isfinite(row.rel_frobenius)


# -- EKFAC ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("net", sorted(NETS))
def test_ekfac_refits_the_diagonal_in_the_kfe_and_beats_kflr(net, record_error):
    problem, w = NETS[net]()
    G = exact_ggn(problem, w)
    E, K = cl.ekfac(problem, w), cl.kflr(problem, w)
    for sl, (QA, QS, s), KB in zip(problem.model.layer_slices(), E.factors, K.blocks()):
        Q = np.kron(QS, QA)
        assert record_error(oracles.rel(s.ravel(), np.diag(Q.T @ G[sl, sl] @ Q))) < TOL
        err = lambda B: np.linalg.norm(B - G[sl, sl])
        assert err(E.to_dense()[sl, sl]) <= err(KB) + 1e-14


@pytest.mark.parametrize("net", sorted(NETS))
def test_ekfac_matches_curvlinops(net):
    import torch                              # in the test extra
    from curvlinops import EKFACLinearOperator
    from curvlab.torch_bridge import from_torch_layout
    problem, w = NETS[net]()
    module = cl.to_torch(problem.model, w)
    op = EKFACLinearOperator(module, torch.nn.CrossEntropyLoss(), list(module.parameters()),
                             [(torch.as_tensor(problem.X), torch.as_tensor(problem.y))], fisher_type="type-2",
                             separate_weight_and_bias=False, check_deterministic=False)
    theirs = from_torch_layout(op.to_scipy() @ np.eye(problem.n_params), problem.model)
    assert oracles.rel(theirs, cl.ekfac(problem, w).to_dense()) < TOL


# -- KFOC and TNT ---------------------------------------------------------------------------------

def test_kfoc_is_exact_for_a_kronecker_block_and_optimal_otherwise(record_error):
    one, w = make_problem([3, 4, 3], "tanh", "cross_entropy", 1)          # Dense, one sample: Gₙ ⊗ āāᵀ
    for got, want in zip(cl.kfoc(one, w).blocks(), cl.ggn_blocks(one, w)):
        assert record_error(oracles.rel(got, want)) < TOL
    problem, w = mlp()
    G = exact_ggn(problem, w)
    for sl, (A, S), layer, KB in zip(problem.model.layer_slices(), cl.kfoc(problem, w).factors,
                                     problem.model.layers, cl.kflr(problem, w).blocks()):
        Gl = G[sl, sl]
        s1 = np.linalg.svd(rearrange(Gl, layer.n_out, layer.n_in + 1), compute_uv=False)[0]
        gap = np.linalg.norm(Gl - np.kron(S, A)) ** 2
        assert abs(gap - (np.linalg.norm(Gl) ** 2 - s1 ** 2)) < 1e-10 * np.linalg.norm(Gl) ** 2
        assert np.linalg.norm(Gl - np.kron(S, A)) <= np.linalg.norm(Gl - KB) + 1e-14


@pytest.mark.parametrize("net", sorted(NETS))
def test_tnt_factors_by_definition_and_its_trace(net, record_error):
    problem, w = NETS[net]()
    G = exact_ggn(problem, w)
    for sl, (A, S), Gm in zip(problem.model.layer_slices(), cl.tnt(problem, w).factors,
                              per_sample_gradient_matrices(problem, w, seeds=True)):
        flat = Gm.reshape(-1, *Gm.shape[2:])
        t = np.einsum("qij,qij->", flat, flat) / problem.N
        assert record_error(oracles.rel(S, np.einsum("qij,qkj->ik", flat, flat) / problem.N / np.sqrt(t))) < TOL
        assert record_error(oracles.rel(A, np.einsum("qij,qik->jk", flat, flat) / problem.N / np.sqrt(t))) < TOL
        assert abs(np.trace(S) * np.trace(A) - np.trace(G[sl, sl])) < 1e-12 * np.trace(G[sl, sl])


# -- Shampoo --------------------------------------------------------------------------------------

@pytest.mark.parametrize("power", [0.25, 0.5])
def test_shampoo_is_l_to_the_p_kron_r_to_the_p_and_its_inverse_is_the_preconditioner(power):
    problem, w = mlp()
    K = cl.shampoo(problem, w, power=power, eps=1e-3)
    g = problem.grad(w)
    step = K.solve(g)
    for sl, (A, S), Gm in zip(problem.model.layer_slices(), K.factors, per_sample_gradient_matrices(problem, w)):
        Gn = Gm[0]
        L = np.einsum("nij,nkj->ik", Gn, Gn) / problem.N + 1e-3 * np.eye(Gn.shape[1])
        R = np.einsum("nij,nik->jk", Gn, Gn) / problem.N + 1e-3 * np.eye(Gn.shape[2])
        pw = lambda M, p: (lambda lam, U: (U * lam ** p) @ U.T)(*np.linalg.eigh(M))
        assert oracles.rel(S, pw(L, power)) < TOL and oracles.rel(A, pw(R, power)) < TOL
        Gl = g[sl].reshape(Gn.shape[1:])
        assert oracles.rel(step[sl].reshape(Gl.shape), pw(L, -power) @ Gl @ pw(R, -power)) < 1e-9
    with pytest.raises(ValueError, match="power must be in"):
        cl.shampoo(problem, w, power=0.0)


# -- unit-wise Fisher -----------------------------------------------------------------------------

@pytest.mark.parametrize("net", sorted(NETS))
def test_unitwise_blocks_are_the_exact_unit_sub_blocks(net, record_error):
    problem, w = NETS[net]()
    G = exact_ggn(problem, w)
    U = cl.unitwise(problem, w)
    for sl, units, layer in zip(problem.model.layer_slices(), U.units, problem.model.layers):
        m1 = layer.n_in + 1
        for i, block in enumerate(units):
            rows = slice(sl.start + i * m1, sl.start + (i + 1) * m1)
            assert record_error(oracles.rel(block, G[rows, rows])) < TOL


# -- diagonals --------------------------------------------------------------------------------------

@pytest.mark.parametrize("net", sorted(NETS))
def test_diag_hessian_is_the_exact_diagonal(net, record_error):
    problem, w = NETS[net]()
    plain = oracles.Plain(problem) if net == "conv" else problem
    assert record_error(oracles.rel(cl.diag_hessian(problem, w), np.diag(oracles.H(plain, w)))) < TOL


def test_diag_ggn_mc_is_the_mc_fishers_diagonal_and_converges():
    problem, w = mlp()
    assert oracles.rel(cl.diag_ggn_mc(problem, w, samples=3, seed=5),
                       np.diag(cl.fisher(problem, w, "mc", samples=3, seed=5))) < 1e-12
    exact = cl.diag_ggn(problem, w)
    errs = [oracles.rel(cl.diag_ggn_mc(problem, w, samples=s, seed=1), exact) for s in (2, 20000)]
    assert errs[1] < 0.05 and errs[1] < errs[0] / 5


def test_diagonals_match_backpack():
    import torch
    from backpack import backpack, extend
    from backpack.extensions import DiagGGNExact, DiagHessian
    problem, w = mlp()
    module = extend(cl.to_torch(problem.model, w))
    with backpack(DiagHessian(), DiagGGNExact()):
        extend(torch.nn.CrossEntropyLoss())(module(torch.as_tensor(problem.X)), torch.as_tensor(problem.y)).backward()
    lin = [m for m in module if isinstance(m, torch.nn.Linear)]
    flat = lambda attr: np.concatenate([np.hstack([getattr(m.weight, attr).numpy(),
                                                   getattr(m.bias, attr).numpy()[:, None]]).ravel() for m in lin])
    assert oracles.rel(flat("diag_h"), cl.diag_hessian(problem, w)) < TOL
    assert oracles.rel(flat("diag_ggn_exact"), cl.diag_ggn(problem, w)) < TOL


# -- square root of the GGN, NTK, per-sample gradients ----------------------------------------------

@pytest.mark.parametrize("net", sorted(NETS))
def test_sqrt_ggn_and_ntk(net, record_error):
    problem, w = NETS[net]()
    G = exact_ggn(problem, w)
    V = cl.sqrt_ggn(problem, w)
    assert V.shape == (problem.n_params, problem.N * problem.n_outputs)
    assert record_error(oracles.rel(V @ V.T, G)) < TOL
    big, small = np.linalg.eigvalsh(V @ V.T), np.linalg.eigvalsh(V.T @ V)         # nonzero spectra agree
    assert oracles.rel(big[-len(small):], small) < 1e-9
    plain = oracles.Plain(problem) if net == "conv" else problem
    J = oracles.output_jacobian(plain, w).reshape(-1, problem.n_params)
    assert record_error(oracles.rel(cl.ntk(problem, w), J @ J.T)) < TOL


def test_ntk_over_n_and_the_mse_ggn_share_their_nonzero_spectrum():
    problem, w = make_problem([3, 4, 2], "tanh", "mse", 5)
    theta = np.linalg.eigvalsh(cl.ntk(problem, w) / problem.N)
    G = np.linalg.eigvalsh(cl.ggn(problem, w))
    assert oracles.rel(G[-len(theta):], theta) < 1e-9


@pytest.mark.parametrize("net", sorted(NETS))
def test_per_sample_gradients_and_batch_statistics(net, record_error):
    problem, w = NETS[net]()
    plain = oracles.Plain(problem) if net == "conv" else problem
    Gs = cl.per_sample_grads(problem, w)
    assert record_error(oracles.rel(Gs, oracles.per_sample_grads(plain, w))) < TOL
    assert oracles.rel(Gs.mean(0), problem.grad(w)) < 1e-12                      # no L2 here
    st = cl.batch_stats(problem, w)
    EF = cl.fisher(problem, w, "empirical")
    assert oracles.rel(st.sum_squares / problem.N, np.diag(EF)) < 1e-12
    assert abs(st.l2.sum() / problem.N - np.trace(EF)) < 1e-12 * np.trace(EF)
    assert oracles.rel(st.variance, Gs.var(0)) < 1e-12


def test_per_sample_quantities_match_backpack():
    import torch
    from backpack import backpack, extend
    from backpack.extensions import BatchGrad, BatchL2Grad, SqrtGGNExact, SumGradSquared, Variance
    problem, w = mlp()
    N = problem.N
    module = extend(cl.to_torch(problem.model, w))
    with backpack(BatchGrad(), BatchL2Grad(), SumGradSquared(), Variance(), SqrtGGNExact()):
        extend(torch.nn.CrossEntropyLoss())(module(torch.as_tensor(problem.X)), torch.as_tensor(problem.y)).backward()
    lin = [m for m in module if isinstance(m, torch.nn.Linear)]
    # BackPACK's per-sample gradients carry the mean's 1/N: theirs = ours / N (squares / N²)
    grads = np.concatenate([np.concatenate([m.weight.grad_batch.numpy(), m.bias.grad_batch.numpy()[:, :, None]],
                                           axis=2).reshape(N, -1) for m in lin], axis=1)
    assert oracles.rel(N * grads, cl.per_sample_grads(problem, w)) < TOL
    st = cl.batch_stats(problem, w)
    assert oracles.rel(N ** 2 * sum(m.weight.batch_l2.numpy() + m.bias.batch_l2.numpy() for m in lin), st.l2) < TOL
    flat = lambda attr: np.concatenate([np.hstack([getattr(m.weight, attr).numpy(),
                                                   getattr(m.bias, attr).numpy()[:, None]]).ravel() for m in lin])
    assert oracles.rel(N ** 2 * flat("sum_grad_squared"), st.sum_squares) < TOL
    assert oracles.rel(N ** 2 * flat("variance"), st.variance) < TOL
    # SqrtGGNExact: [R, N, *param]; curvlab's columns are ordered (n, r)
    sq = np.concatenate([np.concatenate([m.weight.sqrt_ggn_exact.numpy(), m.bias.sqrt_ggn_exact.numpy()[..., None]],
                                        axis=3).reshape(problem.n_outputs, N, -1) for m in lin], axis=2)
    V = cl.sqrt_ggn(problem, w)
    assert oracles.rel(sq.transpose(1, 0, 2).reshape(-1, problem.n_params).T, V) < TOL


# -- ViViT -------------------------------------------------------------------------------------------

def test_vivit_eigenpairs_directional_derivatives_and_damped_step(record_error):
    problem, w = mlp()
    G = cl.ggn(problem, w)
    vv = cl.vivit(problem, w)
    lam = np.linalg.eigvalsh(G)[::-1][:len(vv.eigenvalues)]
    assert record_error(oracles.rel(vv.eigenvalues, lam)) < 1e-9
    U = vv.eigenvectors
    assert oracles.rel(G @ U, U * vv.eigenvalues) < 1e-9
    assert oracles.rel(vv.lambdas.mean(0), vv.eigenvalues) < 1e-10
    assert oracles.rel(vv.gammas, cl.per_sample_grads(problem, w) @ U) < 1e-12
    # equal damping over every nonzero eigenpair, no L2: −(G + δI)⁻¹ Π g
    g, delta = problem.grad(w), 0.3
    Pi = U @ U.T
    assert record_error(oracles.rel(vv.newton_step(delta), -np.linalg.solve(G + delta * np.eye(len(G)), Pi @ g))) < 1e-9
    assert len(cl.vivit(problem, w, k=3).eigenvalues) == 3
    with pytest.raises(ValueError, match="numerical rank"):
        cl.vivit(problem, w, k=10 ** 6)
