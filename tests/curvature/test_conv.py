"""Every exact quantity on convolutional nets against autograd on an independent plain forward
(tests/oracles.plain_forward), and the identities of DESIGN.md's conv section.

Cases cover stride 1 and 2, padding 0 and 1, max and average pooling, tanh / sigmoid / relu /
softplus, CE / MSE / BCE, N = 1 and N > 1, two conv layers in a row, a conv as the last layer
and a rectangular kernel — pairwise, not as a full grid. Inputs are seeded Gaussian noise, so
max-pool windows have no ties (the tie rule has its own test).
"""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad as ag_grad
from autograd import hessian as ag_hessian

import curvlab as cl
from curvlab.curvature.ggn import gram_ggn
from tests import oracles
from tests.conftest import targets

TOL = 1e-10

CASES = {
    "c3p1-tanh-max-ce-N3": ([cl.Conv2d(2, 3, 3, padding=1, activation="tanh"), cl.MaxPool2d(2),
                             cl.Flatten(), cl.Dense(27, 3)], (2, 6, 6), "cross_entropy", 3),
    "c3s2p1-sigmoid-avg-mse-N1": ([cl.Conv2d(2, 3, 3, stride=2, padding=1, activation="sigmoid"),
                                   cl.AvgPool2d(3), cl.Flatten(), cl.Dense(3, 2)], (2, 6, 6), "mse", 1),
    "c3p0-relu-max-bce-N4": ([cl.Conv2d(2, 3, 3, activation="relu"), cl.MaxPool2d(2), cl.Flatten(),
                              cl.Dense(12, 2)], (2, 6, 6), "bce", 4),
    "two-convs-softplus-tanh-avg-ce-N2": ([cl.Conv2d(2, 3, 3, padding=1, activation="softplus"),
                                           cl.Conv2d(3, 2, 3, padding=1, activation="tanh"),
                                           cl.AvgPool2d(2), cl.Flatten(), cl.Dense(18, 3)],
                                          (2, 6, 6), "cross_entropy", 2),
    "two-convs-s2-relu-max3-mse-N3": ([cl.Conv2d(2, 2, 2, stride=2, activation="tanh"),
                                       cl.Conv2d(2, 3, 3, padding=1, activation="relu"), cl.MaxPool2d(3),
                                       cl.Flatten(), cl.Dense(3, 2)], (2, 6, 6), "mse", 3),
    "conv-last-bce-N2": ([cl.Conv2d(2, 2, 3, padding=1, activation="sigmoid"), cl.Conv2d(2, 2, 3, stride=2),
                          cl.Flatten()], (2, 5, 5), "bce", 2),
    "rect-kernel-tanh-mse-N2": ([cl.Conv2d(2, 2, (2, 3), stride=(1, 2), padding=(1, 0), activation="tanh"),
                                 cl.Flatten(), cl.Dense(28, 2)], (2, 6, 6), "mse", 2),
    "conv-pool-dense-dense-relu-ce-N3": ([cl.Conv2d(1, 2, 3, padding=1, activation="relu"), cl.MaxPool2d(2),
                                          cl.Flatten(), cl.Dense(8, 4, "tanh"), cl.Dense(4, 3)],
                                         (1, 4, 4), "cross_entropy", 3),
}


def make_conv_problem(modules, input_shape, loss, N, seed=0, l2=0.0, scale=0.3):
    rng = np.random.default_rng(seed)
    model = cl.Sequential(modules, input_shape=input_shape)
    X = rng.standard_normal((N,) + tuple(input_shape))
    problem = cl.Problem(model, loss, X, targets(loss, N, model.n_out, rng), l2=l2)
    return problem, model.init(seed) + scale * rng.standard_normal(model.n_params)


_REFS = {}


def reference(name):
    """(problem, w, plain) and the oracle matrices of a case, computed once per session."""
    if name not in _REFS:
        problem, w = make_conv_problem(*CASES[name])
        plain = oracles.Plain(problem)
        _REFS[name] = dict(problem=problem, w=w, plain=plain, H=oracles.H(plain, w),
                           G=oracles.GGN(plain, w))
    return _REFS[name]


@pytest.fixture(params=sorted(CASES))
def conv_case(request):
    return reference(request.param)


def test_loss_and_gradient_match_the_plain_forward(conv_case, record_error):
    p, w, plain = conv_case["problem"], conv_case["w"], conv_case["plain"]
    assert abs(p.loss(w) - plain.loss(w)) <= 1e-13 * abs(plain.loss(w))
    assert oracles.rel(p.outputs(w), oracles.plain_forward(p.model, w, p.X)) < 1e-13
    assert record_error(oracles.rel(p.grad(w), ag_grad(plain.loss)(w))) < TOL


def test_dense_matrices_match_autograd(conv_case, record_error):
    p, w, plain, H, G = (conv_case[k] for k in ("problem", "w", "plain", "H", "G"))
    assert record_error(oracles.rel(cl.hessian(p, w), H)) < TOL
    assert record_error(oracles.rel(cl.ggn(p, w), G)) < TOL
    assert record_error(oracles.rel(gram_ggn(p, w), G)) < TOL
    assert record_error(oracles.rel(cl.fisher(p, w, "true"), oracles.true_fisher(plain, w))) < TOL
    assert record_error(oracles.rel(cl.fisher(p, w, "empirical"), oracles.empirical_fisher(plain, w))) < TOL
    assert record_error(oracles.rel(cl.diag_ggn(p, w), np.diag(G))) < TOL


def test_layer_blocks_match_autograd(conv_case, record_error):
    p, w, H, G = (conv_case[k] for k in ("problem", "w", "H", "G"))
    for got, want in zip(cl.hessian_blocks(p, w), oracles.blocks(H, p.model)):
        assert record_error(oracles.rel(got, want)) < TOL
    for got, want in zip(cl.ggn_blocks(p, w), oracles.blocks(G, p.model)):
        assert record_error(oracles.rel(got, want)) < TOL


def test_products_match_autograd(conv_case, record_error):
    p, w, plain, H, G = (conv_case[k] for k in ("problem", "w", "plain", "H", "G"))
    rng = np.random.default_rng(1)
    V = rng.standard_normal((p.n_params, 3))
    F, EF = oracles.true_fisher(plain, w), oracles.empirical_fisher(plain, w)
    for x in (V[:, 0], V):
        assert record_error(oracles.rel(cl.hvp(p, w, x), H @ x)) < TOL
        assert record_error(oracles.rel(cl.ggnvp(p, w, x, method="rop"), G @ x)) < TOL
        assert record_error(oracles.rel(cl.ggnvp(p, w, x, method="jacobian"), G @ x)) < TOL
        assert record_error(oracles.rel(cl.fishervp(p, w, x), F @ x)) < TOL
        assert record_error(oracles.rel(cl.fishervp(p, w, x, kind="empirical"), EF @ x)) < TOL
    assert oracles.rel(cl.operator(p, w, "hessian") @ V, H @ V) < TOL
    J = oracles.output_jacobian(plain, w)
    u = rng.standard_normal((p.N, p.n_outputs))
    assert record_error(oracles.rel(cl.jvp(p, w, V[:, 0]), J @ V[:, 0])) < TOL
    assert record_error(oracles.rel(cl.vjp(p, w, u), np.einsum("nkp,nk->p", J, u))) < TOL


def test_l2_term_and_sample_chunks(monkeypatch):
    # The dense builds take samples in chunks when their per-sample arrays are large: the
    # result must not depend on it. And λI is added exactly once.
    from curvlab.curvature import _dense
    problem, w = make_conv_problem(*CASES["two-convs-softplus-tanh-avg-ce-N2"][:3], N=5, l2=0.2)
    H, G = cl.hessian(problem, w), cl.ggn(problem, w)
    assert oracles.rel(H, oracles.H(oracles.Plain(problem), w)) < TOL
    monkeypatch.setattr(_dense, "_CHUNK_BYTES", 1)            # one sample (and one row) at a time
    assert oracles.rel(cl.hessian(problem, w), H) < 1e-13
    assert oracles.rel(cl.ggn(problem, w), G) < 1e-13
    assert oracles.rel(cl.fisher(problem, w, "true"), G) < 1e-12
    for a, b in zip(cl.hessian_blocks(problem, w), oracles.blocks(H, problem.model)):
        assert oracles.rel(a, b) < 1e-13


def test_hessian_is_exactly_symmetric_on_a_conv_net():
    H = cl.hessian(reference("c3p1-tanh-max-ce-N3")["problem"], reference("c3p1-tanh-max-ce-N3")["w"])
    assert np.array_equal(H, H.T)


# -- identities ------------------------------------------------------------------------------

def _one_location_problem(loss, act, seed):
    # The conv kernel covers the whole (unpadded) input: one output location.
    return make_conv_problem([cl.Conv2d(2, 3, 4, activation=act), cl.Flatten(), cl.Dense(3, 3)],
                             (2, 4, 4), loss, 1, seed=seed)


@pytest.mark.parametrize("loss,act", [("cross_entropy", "tanh"), ("mse", "sigmoid"), ("bce", "relu")])
@pytest.mark.parametrize("flavor", ["expand", "reduce"])
def test_kflr_and_kfra_equal_ggn_blocks_for_one_sample_and_one_location(loss, act, flavor, record_error):
    problem, w = _one_location_problem(loss, act, seed=3)
    want = cl.ggn_blocks(problem, w)
    for approx in (cl.kflr(problem, w, flavor=flavor), cl.kfra(problem, w, flavor=flavor)):
        for got, ref in zip(approx.blocks(), want):
            assert record_error(oracles.rel(got, ref)) < TOL


def test_kflr_is_not_exact_with_several_locations():
    # Companion: with T > 1 locations and one sample, neither flavor is the GGN block.
    problem, w = make_conv_problem([cl.Conv2d(2, 3, 3, padding=1, activation="tanh"), cl.Flatten(),
                                    cl.Dense(48, 3)], (2, 4, 4), "cross_entropy", 1)
    conv_block = cl.ggn_blocks(problem, w)[0]
    for flavor in ("expand", "reduce"):
        assert oracles.rel(cl.kflr(problem, w, flavor=flavor).blocks()[0], conv_block) > 1e-2


def _expand_setting():
    # One linear conv whose flattened outputs are the model's outputs, MSE.
    return make_conv_problem([cl.Conv2d(2, 3, 3, padding=1), cl.Flatten()], (2, 4, 4), "mse", 5)


def _reduce_setting():
    # One linear conv, then global average pooling, MSE.
    return make_conv_problem([cl.Conv2d(2, 3, 3, padding=1), cl.AvgPool2d(4), cl.Flatten()],
                             (2, 4, 4), "mse", 5)


@pytest.mark.parametrize("setting,exact,other", [(_expand_setting, "expand", "reduce"),
                                                 (_reduce_setting, "reduce", "expand")])
def test_each_flavor_is_exact_in_its_setting(setting, exact, other, record_error):
    problem, w = setting()
    G = oracles.GGN(oracles.Plain(problem), w)
    assert record_error(oracles.rel(cl.kflr(problem, w, flavor=exact).to_dense(), G)) < TOL
    assert record_error(oracles.rel(cl.kfra(problem, w, flavor=exact).to_dense(), G)) < TOL
    assert oracles.rel(cl.kflr(problem, w, flavor=other).to_dense(), G) > 0.1      # companion
    # MC K-FAC only approaches it as samples grow (fixed seed, loose tolerance).
    errs = [oracles.rel(cl.kfac(problem, w, samples=S, seed=1, flavor=exact).to_dense(), G)
            for S in (2, 5000)]
    assert errs[1] < 0.05 and errs[1] < errs[0] / 5


def test_flavors_agree_on_dense_layers():
    problem, w = reference("conv-pool-dense-dense-relu-ce-N3")["problem"], reference("conv-pool-dense-dense-relu-ce-N3")["w"]
    ex, re = cl.kflr(problem, w, flavor="expand").factors, cl.kflr(problem, w, flavor="reduce").factors
    for (A1, S1), (A2, S2) in zip(ex[1:], re[1:]):
        assert np.array_equal(A1, A2) and np.array_equal(S1, S2)
    assert oracles.rel(ex[0][0], re[0][0]) > 1e-3 and oracles.rel(ex[0][1], re[0][1]) > 1e-3
    with pytest.raises(ValueError, match="unknown flavor 'mean'"):
        cl.kflr(problem, w, flavor="mean")


def test_kflr_factors_by_their_definitions():
    # expand: A = (1/(N·T)) Σ āāᵀ over every patch; reduce: A from location-averaged patches;
    # S from backprops of the columns of √B, per location (expand) or summed (reduce).
    p, w = reference("c3p1-tanh-max-ce-N3")["problem"], reference("c3p1-tanh-max-ce-N3")["w"]
    plain = oracles.Plain(p)
    layer = p.model.layers[0]
    x = np.pad(p.X.transpose(0, 2, 3, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.stack([np.concatenate([x[:, h:h + 3, v:v + 3, :].transpose(0, 3, 1, 2).reshape(p.N, -1),
                                        np.ones((p.N, 1))], 1)
                        for h in range(6) for v in range(6)], 1)                 # (N, T, m+1)
    T = layer.T
    A_expand = np.einsum("ntj,ntk->jk", patches, patches) / (p.N * T)
    A_reduce = patches.mean(1).T @ patches.mean(1) / p.N
    # J_{n,t} = ∂z/∂s_{n,t} by autograd through the plain forward of the layers after the conv
    from autograd import jacobian
    Wb = p.model.unflatten(w)
    s = patches @ Wb[0].T                                                         # (N, T, 3)
    rest = lambda s_: oracles.plain_forward(
        cl.Sequential([cl.MaxPool2d(2), cl.Flatten(), cl.Dense(27, 3)], input_shape=(3, 6, 6)),
        w[p.model.layer_slices()[1]], anp.transpose(anp.reshape(anp.tanh(s_), (p.N, 6, 6, 3)), (0, 3, 1, 2)))
    J = jacobian(rest)(s)                                                          # (N, K, N, T, 3)
    J = np.stack([J[n, :, n] for n in range(p.N)])                                 # (N, K, T, 3)
    B = oracles.output_hessians(plain, w)
    S_expand = np.einsum("nktc,nkl,nltd->cd", J, B, J) / p.N
    S_reduce = np.einsum("nkc,nkl,nld->cd", J.sum(2), B, J.sum(2)) / p.N
    for flavor, A, S in (("expand", A_expand, S_expand), ("reduce", A_reduce, S_reduce)):
        A_got, S_got = cl.kflr(p, w, flavor=flavor).factors[0]
        assert oracles.rel(A_got, A) < 1e-13 and oracles.rel(S_got, S) < TOL


@pytest.mark.parametrize("act,agree", [("relu", True), ("identity", True), ("sigmoid", False)])
def test_hessian_and_ggn_diagonal_blocks_agree_for_piecewise_linear_nets(act, agree):
    problem, w = make_conv_problem([cl.Conv2d(2, 3, 3, padding=1, activation=act), cl.MaxPool2d(2),
                                    cl.Flatten(), cl.Dense(12, 4, act), cl.Dense(4, 3)],
                                   (2, 4, 4), "cross_entropy", 4, scale=0.8)
    H, G = cl.hessian(problem, w), cl.ggn(problem, w)
    sl = problem.model.layer_slices()
    diag = max(oracles.rel(H[s, s], G[s, s]) for s in sl)
    assert (diag < TOL) == agree
    assert oracles.rel(H[sl[1], sl[0]], G[sl[1], sl[0]]) > 1e-3       # cross-layer blocks differ


def test_bulatov_shared_weights_hessian_is_the_tiled_one_pulled_back():
    # H_shared = (I ⊗ K)ᵀ H_tiled (I ⊗ K): the Hessian w.r.t. untied per-location weights, pulled
    # back by the tiling matrix that copies the shared W̄ to every location.
    problem, w = make_conv_problem([cl.Conv2d(1, 2, 2, activation="tanh"), cl.Flatten(), cl.Dense(8, 2)],
                                   (1, 3, 3), "cross_entropy", 2)
    model, plain = problem.model, oracles.Plain(problem)
    conv = model.layers[0]
    T, Pc = conv.T, conv.size
    rest = w[Pc:]
    x = problem.X[:, 0]
    patches = np.stack([np.concatenate([x[:, h:h + 2, v:v + 2].reshape(len(x), -1), np.ones((len(x), 1))], 1)
                        for h in range(2) for v in range(2)], 1)                   # (N, T, 5)

    def tiled_loss(Wt):                        # Wt: (T · P_conv,) one W̄ per location
        a = anp.tanh(anp.einsum("ntj,tij->nti", patches, anp.reshape(Wt, (T, 2, 5))))   # (N, T, c)
        flat = anp.reshape(anp.transpose(a, (0, 2, 1)), (len(x), -1))                # (C, H, W) order
        z = anp.dot(flat, rest.reshape(2, 9)[:, :-1].T) + rest.reshape(2, 9)[:, -1]
        return anp.mean(problem.lossfn.value(z, problem.y))
    K = np.tile(np.eye(Pc), (T, 1))                                              # tiling matrix
    H_tiled = ag_hessian(tiled_loss)(K @ w[:Pc])
    H_shared = oracles.H(plain, w)[:Pc, :Pc]
    assert oracles.rel(K.T @ H_tiled @ K, H_shared) < TOL
    assert oracles.rel(cl.hessian_blocks(problem, w)[0], H_shared) < TOL


# -- max-pool ties ---------------------------------------------------------------------------

def test_max_pool_ties_go_to_the_first_maximum_row_major():
    # Channel 0 is constant, so with w on channel 1 at zero every window of s is a tie; the
    # gradient w.r.t. channel 1's weight then reads x₁ at the first position of each window.
    rng = np.random.default_rng(0)
    model = cl.Sequential([cl.Conv2d(2, 1, 1), cl.MaxPool2d(2), cl.Flatten(), cl.Dense(4, 2)],
                          input_shape=(2, 4, 4))
    X = np.stack([np.ones((3, 4, 4)), rng.standard_normal((3, 4, 4))], 1)
    problem = cl.Problem(model, "cross_entropy", X, [0, 1, 1])
    w = model.init(0)
    w[:3] = [0.7, 0.0, 0.1]                                     # W = [0.7, 0], b = 0.1
    # by hand: z = V m + c with m the first entry of each window, ∂L/∂W_1 = mean_n Σ_o g_o x₁[first_o]
    first = X[:, 1, ::2, ::2].reshape(3, 4)                     # window tops-left, row-major windows
    V, c = w[3:].reshape(2, 5)[:, :4], w[3:].reshape(2, 5)[:, 4]
    z = (0.7 + 0.1) * np.ones((3, 4)) @ V.T + c
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g_out = (p - np.eye(2)[[0, 1, 1]]) @ V                      # ∂ℓ/∂m, (N, 4)
    want = np.mean(np.sum(g_out * first, 1))
    assert abs(problem.grad(w)[1] - want) < 1e-14
    assert abs(cl.hessian(problem, w)[1, 1] - cl.ggn(problem, w)[1, 1]) < 1e-14


# -- bad input -------------------------------------------------------------------------------

def test_conv_construction_errors_are_clear():
    with pytest.raises(ValueError, match=r"kernel 5x5 is larger than the padded input 4x4"):
        cl.Sequential([cl.Conv2d(1, 2, 5), cl.Flatten()], input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match=r"does not tile the feature map \(2, 5, 5\).*multiple of 2"):
        cl.Sequential([cl.Conv2d(1, 2, 3, padding=1), cl.MaxPool2d(2), cl.Flatten()], input_shape=(1, 5, 5))
    with pytest.raises(ValueError, match=r"expects 10 input features but gets 32"):
        cl.Sequential([cl.Conv2d(1, 2, 3, padding=1), cl.MaxPool2d(2), cl.Flatten(), cl.Dense(10, 3)],
                      input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"expects 3 input channels"):
        cl.Sequential([cl.Conv2d(3, 2, 3), cl.Flatten()], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"put cl.Flatten\(\) before it"):
        cl.Sequential([cl.Conv2d(1, 2, 3), cl.Dense(72, 2)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"output must be a vector.*Flatten"):
        cl.Sequential([cl.Conv2d(1, 2, 3)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="stride must be an int or a pair of ints >= 1"):
        cl.Conv2d(1, 2, 3, stride=0)
    with pytest.raises(TypeError, match="not a curvlab layer"):
        cl.Sequential([cl.Conv2d(1, 2, 3), "relu", cl.Flatten()], input_shape=(1, 8, 8))


def test_inputs_must_match_the_input_shape():
    model = cl.Sequential([cl.Conv2d(1, 2, 3, padding=1), cl.Flatten(), cl.Dense(128, 3)],
                          input_shape=(1, 8, 8))
    X = np.zeros((5, 8, 8, 1))                                # NHWC by mistake
    with pytest.raises(ValueError, match=r"X must have shape \(N, 1, 8, 8\).*NCHW.*got \(5, 8, 8, 1\)"):
        cl.Problem(model, "cross_entropy", X, np.zeros(5, int))


# -- everything downstream works unchanged ---------------------------------------------------

def test_spectra_landscapes_compare_and_optimisers_on_a_conv_net():
    X, y = cl.datasets.digits(n=40, seed=0, images=True)
    assert X.shape == (40, 1, 8, 8)
    model = cl.Sequential([cl.Conv2d(1, 2, 3, padding=1, activation="tanh"), cl.MaxPool2d(2),
                           cl.Flatten(), cl.Dense(32, 10)], input_shape=(1, 8, 8))
    problem = cl.Problem(model, "cross_entropy", X, y, l2=1e-3)
    w = model.init(0)
    H = cl.hessian(problem, w)
    top = np.linalg.eigvalsh(H)[-3:]
    assert oracles.rel(cl.spectrum(problem, w, "hessian", k=3), top) < 1e-8
    assert oracles.rel(cl.linalg.lanczos_eigs(cl.operator(problem, w, "hessian"), 3), top) < 1e-8
    assert oracles.rel(cl.spectrum(problem, w, "ggn", layer=0), np.linalg.eigvalsh(cl.ggn_blocks(problem, w)[0])) < 1e-10
    d1, d2 = cl.landscape.direction(problem, w, "filter", seed=1), cl.landscape.direction(problem, w, seed=2)
    Z = cl.landscape.grid(problem, w, d1, d2, span=0.5, n=5)
    a = np.linspace(-0.5, 0.5, 5)
    assert oracles.rel(Z, [[problem.loss(w + s * d1 + t * d2) for t in a] for s in a]) < 1e-13
    Q = cl.landscape.quadratic(problem, w, d1, d2, kind="hessian", span=0.5, n=5)
    g = problem.grad(w)
    want = [[problem.loss(w) + g @ (s * d1 + t * d2) + 0.5 * (s * d1 + t * d2) @ H @ (s * d1 + t * d2)
             for t in a] for s in a]
    assert oracles.rel(Q, want) < 1e-12
    table = cl.compare(problem, w, kinds=("kflr", "kfra"), references=("ggn",), flavor="reduce")
    assert len(table) == 2 and len(table[0].layer_errors) == 2
    for method, hyper in [("kflr", dict(damping=0.1)), ("gauss_newton", dict(damping=0.1)),
                          ("kfac", dict(damping=0.1, flavor="reduce"))]:
        tr = cl.optim.minimize(problem, w, method, steps=5, **hyper)
        assert tr.losses[-1] < tr.losses[0], method
