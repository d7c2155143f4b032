"""cl.dynamics.train against independent references: every recorded step against the update rule
with the gradient of a plain autograd forward (not curvlab's engine), every recorded curvature
number against a dense eigensolve of autograd's `hessian` of that forward."""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, hessian
from scipy.sparse.linalg import aslinearoperator

import curvlab as cl
import curvlab.dynamics as dyn
from tests import oracles

SIZES = [2, 4, 3]                       # P = 4·3 + 3·5 = 27


def plain_loss(sizes, X, y, loss, l2=0.0):
    """The loss of a tanh MLP written from scratch in curvlab's flat layout ([W | b] per layer,
    row-major, last layer linear): an independent forward for autograd."""
    def f(w):
        a, i = X, 0
        for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            Wb = anp.reshape(w[i:i + n_out * (n_in + 1)], (n_out, n_in + 1))
            i += n_out * (n_in + 1)
            s = anp.dot(a, Wb[:, :-1].T) + Wb[:, -1]
            a = anp.tanh(s) if l < len(sizes) - 2 else s
        if loss == "cross_entropy":
            m = anp.max(a, axis=1, keepdims=True)
            lse = m[:, 0] + anp.log(anp.sum(anp.exp(a - m), axis=1))
            val = anp.mean(lse - a[anp.arange(len(y)), y])
        else:
            val = anp.mean(0.5 * anp.sum((a - y) ** 2, axis=1))
        return val + 0.5 * l2 * anp.sum(w * w)
    return f


def setup(loss="cross_entropy", n=20, l2=0.0, sizes=SIZES):
    X, y = cl.datasets.spirals(n=n, classes=sizes[-1], seed=1)
    Y = y if loss == "cross_entropy" else np.eye(sizes[-1])[y]
    problem = cl.Problem(cl.MLP(sizes, activation="tanh"), loss, X, Y, l2=l2)
    w0 = problem.model.init(seed=0)
    f = plain_loss(sizes, X, Y, loss, l2)
    assert abs(f(w0) - problem.loss(w0)) < 1e-14 and len(w0) == 27
    return problem, w0, f


def top_eig(f, w):
    return np.linalg.eigvalsh(hessian(f)(w))[-1]


@pytest.fixture(autouse=True)
def fresh_cache():
    dyn.cache_clear()
    yield
    dyn.cache_clear()


# every step against the update rule --------------------------------------------------------


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_every_gd_step_is_w_minus_eta_grad_and_the_sharpness_is_exact(loss):
    problem, w0, f = setup(loss, l2=1e-3)
    eta = 0.7
    run = dyn.train(problem, w0, "gd", lr=eta, steps=25, every=1)
    g = grad(f)
    assert run.ws.shape == (26, 27) and np.array_equal(run.steps, np.arange(26))
    assert np.array_equal(run.ws[0], w0)
    for t in range(25):
        step = run.ws[t] - eta * g(run.ws[t])
        assert np.abs(run.ws[t + 1] - step).max() <= 1e-13 * max(1, np.abs(step).max())
    for t in range(26):
        assert abs(run.losses[t] - f(run.ws[t])) <= 1e-13
        assert abs(run.sharpness[t] - top_eig(f, run.ws[t])) <= 1e-11 * abs(run.sharpness[t])
    assert run.threshold == 2 / eta and run.threshold_of == "sharpness"
    assert run.status == "completed 25 steps" and not run.diverged


def test_recorded_steps_are_the_first_every_kth_and_last_of_one_trajectory():
    problem, w0, f = setup()
    eta, steps = 0.5, 23
    run = dyn.train(problem, w0, "gd", lr=eta, steps=steps, every=7)
    assert list(run.steps) == [0, 7, 14, 21, 23]
    w, g, traj, losses = w0.copy(), grad(f), [w0.copy()], [f(w0)]
    for _ in range(steps):                  # the whole trajectory, independently
        w = w - eta * g(w)
        traj.append(w)
        losses.append(f(w))
    assert np.abs(run.ws - np.array(traj)[run.steps]).max() < 1e-12
    assert run.losses.shape == (steps + 1,) and np.abs(run.losses - losses).max() < 1e-13
    assert np.abs(run.sharpness - [top_eig(f, x) for x in run.ws]).max() < 1e-11


def test_every_heavy_ball_and_nesterov_step_follows_its_recurrence():
    problem, w0, f = setup()
    eta, beta = 0.3, 0.8
    g = grad(f)
    hb = dyn.train(problem, w0, "momentum", lr=eta, steps=20, every=1, beta=beta)
    nv = dyn.train(problem, w0, "nesterov", lr=eta, steps=20, every=1, beta=beta)
    for t in range(20):
        prev = hb.ws[t - 1] if t else w0   # w_{t+1} = w_t + β(w_t − w_{t−1}) − η∇L(w_t)
        step = hb.ws[t] + beta * (hb.ws[t] - prev) - eta * g(hb.ws[t])
        assert np.abs(hb.ws[t + 1] - step).max() < 1e-12
        prev = nv.ws[t - 1] if t else w0   # the gradient at the look-ahead point
        look = nv.ws[t] + beta * (nv.ws[t] - prev)
        assert np.abs(nv.ws[t + 1] - (look - eta * g(look))).max() < 1e-12
    assert abs(hb.threshold - (2 + 2 * beta) / eta) < 1e-14
    assert abs(nv.threshold - (2 + 2 * beta) / ((1 + 2 * beta) * eta)) < 1e-14
    assert np.abs(hb.sharpness - [top_eig(f, x) for x in hb.ws]).max() < 1e-11


# the Lanczos path ------------------------------------------------------------------------------


def test_warm_started_lanczos_matches_dense_above_the_dense_limit(monkeypatch):
    problem, w0, f = setup()
    monkeypatch.setattr(dyn, "DENSE_LIMIT", 10)            # P = 27 > 10: Lanczos
    track = {"sharpness": {}, "top_eigs": {"k": 4}, "grad_overlap": {"k": 2}, "trace": {}}
    calls = []
    real = dyn._Lanczos.top
    monkeypatch.setattr(dyn._Lanczos, "top",
                        lambda self, op, k: calls.append(self.prev is not None)
                        or real(self, op, k))
    run = dyn.train(problem, w0, "gd", lr=0.8, steps=60, every=3, track=track)
    assert len(run.steps) == 21 and calls[0] is False and all(calls[1:])   # warm after the first
    cold = dyn.train(problem, w0, "gd", lr=0.8, steps=60, every=3, track=track,
                     warm_start=False)
    for i, w in enumerate(run.ws):
        H = hessian(f)(w)
        lam, U = np.linalg.eigh(H)
        g = grad(f)(w)
        assert np.abs(run.top_eigs[i] - lam[::-1][:4]).max() < 1e-10 * lam[-1]
        assert abs(run.sharpness[i] - lam[-1]) < 1e-10 * lam[-1]
        assert abs(run.grad_overlap[i] - np.sum((U[:, -2:].T @ g) ** 2) / (g @ g)) < 1e-8
        assert abs(run.trace[i] - np.trace(H)) < 1e-12 * np.abs(lam).sum()  # diag_hessian
        assert abs(cold.sharpness[i] - lam[-1]) < 1e-10 * lam[-1]


def test_a_warm_start_saves_lanczos_products_and_finds_a_new_top_direction():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    lam = np.concatenate([np.linspace(0, 1, 199), [1.1]])
    A = (Q * lam) @ Q.T
    products = {}
    for warm in (True, False):
        lz = dyn._Lanczos(np.random.default_rng(1), warm)
        lz.top(aslinearoperator(A), 1)
        before = lz.products
        vals, vecs = lz.top(aslinearoperator(A), 1)       # the same matrix again
        products[warm] = lz.products - before
        assert abs(vals[0] - 1.1) < 1e-12 and abs(abs(vecs[:, 0] @ Q[:, -1]) - 1) < 1e-9
    assert products[True] < 0.8 * products[False], products
    # the previous top direction is now the second: the new top one is found all the same
    lz = dyn._Lanczos(np.random.default_rng(1), True)
    lz.prev = Q[:, -1:]
    B = (Q * np.concatenate([np.linspace(0, 1, 198), [1.11, 1.1]])) @ Q.T
    vals, vecs = lz.top(aslinearoperator(B), 1)
    assert abs(vals[0] - 1.11) < 1e-12 and abs(abs(vecs[:, 0] @ Q[:, -2]) - 1) < 1e-9


def test_dense_and_lanczos_solvers_agree_on_a_generic_objective():
    f = cl.objectives.rosenbrock
    w0 = np.array([-1.2, 1.0, 0.5, 0.3])
    fn = lambda w: f(w[:2]) + anp.sum(w[2:] ** 4) + anp.sum(w ** 2)
    runs = [dyn.train(fn, w0, "gd", lr=1e-3, steps=30, every=10, solver=s,
                      track=("sharpness", "trace")) for s in ("dense", "lanczos")]
    exact = [np.linalg.eigvalsh(hessian(fn)(w)) for w in runs[0].ws]
    for r in runs:
        assert np.abs(r.sharpness - [e[-1] for e in exact]).max() < 1e-9 * exact[0][-1]
        assert np.abs(r.trace - [e.sum() for e in exact]).max() < 1e-9 * exact[0][-1]


# the other quantities --------------------------------------------------------------------------


def test_adam_preconditioned_sharpness_against_a_direct_computation(monkeypatch):
    problem, w0, f = setup("mse")
    eta, b1, b2, eps = 0.05, 0.9, 0.99, 1e-8
    run = dyn.train(problem, w0, "adam", lr=eta, steps=14, every=4, beta2=b2,
                    track=("sharpness", "preconditioned_sharpness"))
    assert list(run.steps) == [0, 4, 8, 12, 14]
    g, w, m, v, expect = grad(f), w0.copy(), 0.0, 0.0, {}
    for t in range(15):                       # Adam by hand; P uses v̂ after the update at t
        gt = g(w)
        m, v = b1 * m + (1 - b1) * gt, b2 * v + (1 - b2) * gt ** 2
        mhat, vhat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
        Pdiag = (1 - b1 ** (t + 1)) * (np.sqrt(vhat) + eps)
        if t in run.steps:
            i = list(run.steps).index(t)
            assert np.abs(run.ws[i] - w).max() < 1e-12
            d = 1 / np.sqrt(Pdiag)
            expect[t] = np.linalg.eigvalsh(d[:, None] * hessian(f)(w) * d[None, :])[-1]
        w = w - eta * mhat / (np.sqrt(vhat) + eps)
    want = np.array([expect[t] for t in run.steps])
    assert np.abs(run.preconditioned_sharpness - want).max() < 1e-10 * want.max()
    assert abs(run.threshold - (2 + 2 * b1) / ((1 - b1) * eta)) < 1e-12
    assert run.threshold_of == "preconditioned_sharpness"
    monkeypatch.setattr(dyn, "DENSE_LIMIT", 10)                # the matrix-free path
    lz = dyn.train(problem, w0, "adam", lr=eta, steps=14, every=4, beta2=b2,
                   track=("preconditioned_sharpness",))
    assert np.abs(lz.preconditioned_sharpness - want).max() < 1e-9 * want.max()


def test_grad_overlap_eigvals_trace_and_a_kinds_top_eigenvalue():
    problem, w0, f = setup("mse")
    run = dyn.train(problem, w0, "gd", lr=0.5, steps=40, every=20,
                    track=("grad_overlap", "eigvals", "trace", "ggn", "top_eigs", "kflr"))
    assert run.sharpness is None and run.top_eigs.shape == (3, 5)
    for i, w in enumerate(run.ws):
        lam, U = np.linalg.eigh(hessian(f)(w))
        g = grad(f)(w)
        k = 3                                                 # default: C = 3 outputs
        assert abs(run.grad_overlap[i] - np.sum((U[:, -k:].T @ g) ** 2) / (g @ g)) < 1e-10
        assert np.abs(run.eigvals[i] - lam).max() < 1e-11 * lam[-1]
        assert abs(run.trace[i] - lam.sum()) < 1e-11 * np.abs(lam).sum()
        assert np.abs(run.top_eigs[i] - lam[::-1][:5]).max() < 1e-11 * lam[-1]
        G = oracles.GGN(problem, w)                           # autograd Jacobians
        assert abs(run.kinds["ggn"][i] - np.linalg.eigvalsh(G)[-1]) < 1e-10 * lam[-1]
        K = cl.kflr(problem, w).to_dense()                    # from its factors, not P x P
        assert abs(run.kinds["kflr"][i] - np.linalg.eigvalsh(K)[-1]) < 1e-10 * lam[-1]
    assert run["ggn"] is run.kinds["ggn"] and run["trace"] is run.trace
    with pytest.raises(KeyError, match="not tracked"):
        run["sharpness"]


def test_density_is_slq_of_the_exact_hessian():
    problem, w0, f = setup()
    opts = {"probes": 3, "steps": 27, "seed": 4}
    run = dyn.train(problem, w0, "gd", lr=0.5, steps=20, every=10, track={"density": opts})
    assert run.slq_nodes.shape == (3, 3, 27) and len(run.density) == 3
    for i, w in enumerate(run.ws):
        lam = np.linalg.eigvalsh(hessian(f)(w))
        grid, dens = cl.slq_density(cl.hessian(problem, w), **opts)
        assert np.abs(run.density[i][0] - grid).max() < 1e-9 * lam[-1]
        assert np.abs(run.density[i][1] - dens).max() < 1e-6 * dens.max()
        # P Lanczos steps: the nodes are the exact eigenvalues, both ends included
        assert abs(run.slq_nodes[i].max() - lam[-1]) < 1e-9 * lam[-1]
        assert abs(run.slq_nodes[i].min() - lam[0]) < 1e-9 * lam[-1]
        assert np.allclose(run.slq_weights[i].sum(1), 1)


# thresholds ----------------------------------------------------------------------------------


def test_threshold_formulas():
    assert dyn.threshold("gd", 0.5) == 4.0
    assert dyn.threshold("momentum", 0.5) == pytest.approx(3.8 / 0.5)          # β = 0.9
    assert dyn.threshold("momentum", 0.1, beta=0.5) == pytest.approx(30.0)
    assert dyn.threshold("nesterov", 1.0, beta=0.9) == pytest.approx(3.8 / 2.8)
    assert dyn.threshold("adam", 1.0) == pytest.approx(38.0)                  # β₁ = 0.9
    assert dyn.threshold("adam", 0.01, beta1=0.5) == pytest.approx(600.0)
    for m in ("newton", "gauss_newton", "hessian_free", "kfac"):
        assert dyn.threshold(m, 1.0) is None


@pytest.mark.parametrize("method,hyper", [("gd", {}), ("momentum", {"beta": 0.7}),
                                          ("nesterov", {"beta": 0.6})])
def test_thresholds_are_the_stability_edges_of_the_quadratic(method, hyper):
    """On L = ½ a x², the method converges just below its threshold and diverges just above."""
    eta = 0.5
    thr = dyn.threshold(method, eta, **hyper)
    for factor, stable in ((0.97, True), (1.03, False)):
        a = factor * thr
        fn = lambda x, a=a: 0.5 * a * anp.sum(x ** 2)
        run = dyn.train(fn, np.array([1.0]), method, lr=eta, steps=1500, every=500, **hyper)
        assert run.sharpness[0] == pytest.approx(a, rel=1e-12)
        assert run.diverged is not stable, (factor, run.status)
        if stable:
            assert run.losses[-1] < 1e-6


# divergence and bad input ----------------------------------------------------------------------


def test_divergence_stops_with_the_step_and_the_sharpness():
    problem, w0, f = setup("mse")
    run = dyn.train(problem, w0, "gd", lr=30.0, steps=500, every=50, track=())
    assert run.diverged and run.diverged_step == len(run.losses) < 500
    assert f"diverged at step {run.diverged_step}" in run.status
    assert run.steps[-1] == run.diverged_step - 1 == run.n_steps       # last finite iterate
    exact = top_eig(f, run.ws[-1])
    assert abs(run.diverged_sharpness - exact) < 1e-10 * exact
    assert run.diverged_sharpness > run.threshold and f"{exact:.4g}" in run.status
    assert np.all(np.isfinite(run.losses))


def test_every_larger_than_steps_records_the_first_and_last():
    problem, w0, _ = setup()
    run = dyn.train(problem, w0, "gd", lr=0.5, steps=5, every=50)
    assert list(run.steps) == [0, 5] and run.ws.shape == (2, 27) and len(run.losses) == 6
    zero = dyn.train(problem, w0, "gd", lr=0.5, steps=0, every=3)
    assert list(zero.steps) == [0] and len(zero.losses) == 1


@pytest.mark.parametrize("kw,err,match", [
    (dict(every=0), ValueError, "every must be >= 1"),
    (dict(every=2.5), TypeError, "every must be an integer"),
    (dict(steps=-1), ValueError, "steps must be >= 0"),
    (dict(lr=-0.1), ValueError, "finite number > 0"),
    (dict(method="newton", lr=0.5), ValueError, "has no step size"),
    (dict(method="hessian_free", lr=0.5), ValueError, "has no step size"),
    (dict(method="sgd"), ValueError, "unknown method"),
    (dict(track=("sharpnes",)), ValueError, "unknown tracked quantity 'sharpnes'"),
    (dict(track={"top_eigs": {"n": 3}}), ValueError, "takes no option"),
    (dict(track={"top_eigs": {"k": 0}}), ValueError, "k must be an integer in 1..27"),
    (dict(track=("preconditioned_sharpness",)), ValueError, "Adam's"),
    (dict(solver="arpack"), ValueError, "unknown solver"),
    (dict(beta=0.9), TypeError, "bad settings for method 'gd'"),
    (dict(progress="yes"), TypeError, "progress takes None, True, False or a function"),
])
def test_bad_input_is_refused_by_name(kw, err, match):
    problem, w0, _ = setup()
    args = dict(method="gd", steps=3, every=1)
    args.update(kw)
    with pytest.raises(err, match=match):
        dyn.train(problem, w0, **args)


def test_curvature_methods_run_without_lr_and_have_no_threshold():
    problem, w0, _ = setup()
    run = dyn.train(problem, w0, "newton", steps=2, every=1, variant="damped", damping=1.0)
    assert run.lr is None and run.threshold is None and run.threshold_of is None
    assert run.losses[-1] < run.losses[0]


def test_a_kind_the_problem_cannot_build_is_refused_before_training(monkeypatch):
    monkeypatch.setattr(dyn, "_train", lambda *a, **k: pytest.fail("training started"))
    fn = lambda w: anp.sum(w ** 4)
    with pytest.raises(ValueError, match="cannot track kind 'kflr'.*needs a Problem"):
        dyn.train(fn, np.ones(3), "gd", steps=3, track=("kflr",))


def test_a_problem_too_large_for_a_dense_hessian_is_refused_before_training(monkeypatch):
    problem, w0, _ = setup()
    monkeypatch.setattr(dyn, "_train", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr(dyn, "DENSE_MAX", 20)                   # P = 27
    with pytest.raises(cl.DenseTooLargeError, match="'eigvals'.*DENSE_MAX = 20.*'density'"):
        dyn.train(problem, w0, "gd", steps=3, track=("sharpness", "eigvals"))
    with pytest.raises(cl.DenseTooLargeError, match="solver='dense'"):
        dyn.train(problem, w0, "gd", steps=3, solver="dense")
    monkeypatch.setattr(dyn, "DENSE_MAX", 4000)
    old = cl.set_memory_budget(8 * 27 * 27 - 1)                # and the memory budget
    try:
        with pytest.raises(cl.DenseTooLargeError, match="memory"):
            dyn.train(problem, w0, "gd", steps=3, track=("eigvals",), solver="lanczos")
    finally:
        cl.set_memory_budget(old)


# the cache -------------------------------------------------------------------------------------


def test_the_cache_returns_the_same_run_for_the_same_settings_only():
    problem, w0, _ = setup()
    a = dyn.train(problem, w0, "gd", lr=0.5, steps=10, every=5)
    assert dyn.train(problem, w0.copy(), "gd", lr=0.5, steps=10, every=5) is a
    assert dyn.cache_info()["hits"] == 1
    assert not a.ws.flags.writeable and not a.sharpness.flags.writeable
    others = [dyn.train(problem, w0, "gd", lr=0.4, steps=10, every=5),
              dyn.train(problem, w0, "gd", lr=0.5, steps=10, every=2),
              dyn.train(problem, w0 + 1e-3, "gd", lr=0.5, steps=10, every=5),
              dyn.train(problem, w0, "gd", lr=0.5, steps=10, every=5, track=("trace",)),
              dyn.train(problem.subset(np.arange(20)), w0, "gd", lr=0.5, steps=10, every=5),
              dyn.train(problem, w0, "gd", lr=0.5, steps=10, every=5, cache=False)]
    assert all(r is not a for r in others)
    assert np.array_equal(others[-1].sharpness, a.sharpness)        # deterministic
    assert np.array_equal(others[4].sharpness, a.sharpness)         # same data, new object
    assert others[-1].ws.flags.writeable


def test_a_progress_function_hears_every_step_in_order_and_a_cached_run_is_silent():
    problem, w0, _ = setup()
    heard = []
    run = dyn.train(problem, w0, "gd", lr=0.5, steps=7, every=3,
                    progress=lambda done, total: heard.append((done, total)))
    assert heard == [(t, 7) for t in range(1, 8)] and run.n_steps == 7
    # the hook changes nothing: the same run as without it (and the cache serves it silently)
    quiet = dyn.train(problem, w0, "gd", lr=0.5, steps=7, every=3, cache=False, progress=False)
    assert np.array_equal(quiet.ws, run.ws) and np.array_equal(quiet.sharpness, run.sharpness)
    dyn.train(problem, w0, "gd", lr=0.5, steps=7, every=3, progress=heard.append)
    assert len(heard) == 7
    # a run that diverges reports the steps it completed, then stops
    heard.clear()
    problem, w0, _ = setup("mse")
    bad = dyn.train(problem, w0, "gd", lr=30.0, steps=500, every=50, track=(),
                    progress=lambda done, total: heard.append(done))
    assert bad.diverged and heard == list(range(1, bad.n_steps + 1))


def test_run_index_finds_the_nearest_recorded_step():
    problem, w0, _ = setup()
    run = dyn.train(problem, w0, "gd", lr=0.5, steps=30, every=10)
    assert run.index(0) == 0 and run.index(14) == 1 and run.index(16) == 2 and run.index(99) == 3
