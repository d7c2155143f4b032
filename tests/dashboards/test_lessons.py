"""Every "try this" item of every app, at the view its link sets up: a fresh app (as the link opens
one) with the item's query applied, and each claim of its sentence checked from the numbers that
view shows — read from the figures, the tables and the readouts, not recomputed another way,
except where the sentence states a fact beyond the page (then from the same problem and w)."""

import numpy as np
import pytest

import curvlab as cl
from curvlab.dashboards import APPS
from curvlab.dashboards.lessons import Lesson

CHECKS = {}


def lesson(app, i):
    def register(fn):
        CHECKS[(app, i)] = fn
        return fn
    return register


def arr(v):
    return np.array(v, dtype=float)


def trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def table(d, widget):
    """{row's first cell: {column: value}} of the table shown in `widget`."""
    _, header, rows = d.tables[id(widget)]
    return {r[0]: dict(zip(header[1:], r[1:])) for r in rows}


# the apps whose lessons are checked here (a newer app checks its own, beside its tests)
HERE = ("landscape", "spectra", "damping", "trajectories", "products", "beyond")
ALL = [(app, i) for app in HERE for i in range(len(APPS[app].TRY_THIS))]


def test_every_lesson_is_a_link_with_a_check():
    assert len(ALL) >= 26 and set(CHECKS) == set(ALL)
    for app, cls in APPS.items():                       # every app's lessons are links
        assert all(isinstance(t, Lesson) and t.query for t in cls.TRY_THIS), app
        shown = cls().widget.children[-2].value          # the explanation, under the row
        for t in cls.TRY_THIS:
            assert f'href="?{t.query.replace("&", "&amp;")}"' in shown, (app, t.query)


@pytest.mark.parametrize("app, i", ALL, ids=[f"{a}-{i + 1}" for a, i in ALL])
def test_the_lesson_holds_at_its_view(app, i):
    cls = APPS[app]
    d = cls()
    assert d.apply_query(cls.TRY_THIS[i].query) == []
    assert d.status.error is None, d.last_traceback
    CHECKS[(app, i)](d)
    assert d.status.error is None, d.last_traceback


# ---- landscape ---------------------------------------------------------------------------------

def curves(d):
    """(a, loss, {model: its curve}) as the 1-D plot shows them."""
    a, Z = arr(d.line_fig.data[0].x), arr(d.line_fig.data[0].y)
    return a, Z, {t.name: arr(t.y) for t in d.line_fig.data[1:] if t.visible}


def rms(u, v):
    return float(np.sqrt(np.mean((u - v) ** 2)))


@lesson("landscape", 0)
def _(d):
    a, Z, Q = curves(d)
    near, far = np.abs(a) <= a[-1] / 10, np.abs(a) >= 0.8 * a[-1]
    for m, q in Q.items():                        # agree near a = 0, part ways further out
        assert np.abs(q - Z)[near].max() < 0.05 * np.abs(q - Z)[far].max(), m
    best = min(Q, key=lambda m: rms(Q[m], Z))
    assert f"closest along d1: <b>{best}</b>" in d.fit.value
    assert min(table(d, d.fit).items(), key=lambda kv: kv[1]["RMS along d1"])[0] == best


@lesson("landscape", 1)
def _(d):
    a, Z, Q = curves(d)
    assert np.abs(Q["hessian"] - Q["ggn"]).max() <= 1e-9 * np.abs(Z).max()      # coincide
    t = table(d, d.fit)
    assert np.isclose(t["hessian"]["d1ᵀC d1"], t["ggn"]["d1ᵀC d1"], rtol=1e-8)
    d.d1.value, d.layer.value = "filter", -1                                   # across layers
    a, Z, Q = curves(d)
    assert rms(Q["hessian"], Q["ggn"]) > 0.02 * (Z.max() - Z.min())
    t = table(d, d.fit)
    assert abs(t["hessian"]["d1ᵀC d1"] - t["ggn"]["d1ᵀC d1"]) > 0.1 * abs(t["hessian"]["d1ᵀC d1"])


@lesson("landscape", 2)
def _(d):
    def gap():
        t = table(d, d.fit)
        h, g = t["hessian"]["d1ᵀC d1"], t["ggn"]["d1ᵀC d1"]
        return abs(h - g) / abs(h)
    at_init = gap()
    d.picker.state.value = "trained"
    assert d.status.error is None and gap() < 0.6 * at_init


@lesson("landscape", 3)
def _(d):
    t = table(d, d.fit)
    assert t["kfac"]["RMS along d1"] > 1.2 * t["kflr"]["RMS along d1"]
    a, Z, Q = curves(d)
    assert rms(Q["kfac"], Z) > rms(Q["kflr"], Z)


@lesson("landscape", 4)
def _(d):
    problem, _ = d.picker.get()
    assert type(problem.model.layers[0]).__name__ == "Conv2d"
    a, Z, Q = curves(d)
    assert rms(Q["kflr"], Q["ggn"]) > 0.05 * (Z.max() - Z.min())


# ---- spectra -----------------------------------------------------------------------------------

@lesson("spectra", 0)
def _(d):
    def largest_negative():
        return np.nanmax(arr(trace(d.spec_fig, "hessian (λ<0)").y))
    at_init = largest_negative()
    assert np.all(np.isnan(arr(trace(d.spec_fig, "ggn (λ<0)").y)))   # the GGN has none
    d.picker.state.value = "trained"
    assert d.status.error is None and largest_negative() < at_init / 10


def _single_sample_kflr_is_exact(d, layer):
    problem, w = d.picker.get()
    one = problem.subset([0])
    sl = problem.model.layer_slices()[layer]
    np.testing.assert_allclose(cl.kflr(one, w).blocks()[layer], cl.ggn(one, w)[sl, sl],
                               rtol=1e-8, atol=1e-12)


@lesson("spectra", 1)
def _(d):
    R, C, D = (arr(t.z) for t in d.heat_fig.data)
    problem, _ = d.picker.get()
    assert len(R) == problem.model.layers[0].size                  # the block W1
    assert np.linalg.norm(D) > 0.1 * np.linalg.norm(R)             # what the Kronecker misses
    assert d.heat_fig.data[2].name == "kflr − ggn"
    _single_sample_kflr_is_exact(d, 0)


@lesson("spectra", 2)
def _(d):
    rows = {(r[0], r[1]): r for r in d.tables[id(d.table)][2]}
    column = d.tables[id(d.table)][1].index("rel. Frobenius, W1 block")
    assert rows[("kfac", "ggn")][column] > rows[("kflr", "ggn")][column]


@lesson("spectra", 3)
def _(d):
    shown = [t for t in d.slq_fig.data if t.visible]
    assert {t.name for t in shown} == set(d.kinds.value) == {"hessian", "ggn"}
    for t in shown:
        x, y = arr(t.x), arr(t.y)
        drawn = x[~np.isnan(y)]
        lam = d._eigs(t.name, -1)
        assert drawn.min() <= lam.min() and drawn.max() >= lam.max(), t.name
        yy = np.nan_to_num(y)
        bumps = [i for i in range(1, len(yy) - 1)
                 if yy[i] > yy[i - 1] and yy[i] >= yy[i + 1] and yy[i] > 1e-3 * yy.max()]
        assert abs(x[bumps[-1]] - lam.max()) < 0.03 * (lam.max() - lam.min()), t.name


@lesson("spectra", 4)
def _(d):
    import io
    problem, w = d.picker.get()
    M = cl.kflr(problem, w).to_dense() + 0.5 * np.eye(problem.n_params)
    buf = io.BytesIO()
    np.save(buf, M)
    d.load_matrix("mine.npy", buf.getvalue())
    assert d.status.error is None
    assert trace(d.spec_fig, "yours").visible                                  # the spectra
    assert any(r[0] == "yours (mine.npy)" and r[1] == "ggn" for r in d.tables[id(d.table)][2])
    assert d.heat_fig.data[1].name == "yours" and d.heat_fig.data[0].name == "exact ggn"


# ---- damping -----------------------------------------------------------------------------------

def _newton(d):
    s = d._state()
    return -s["C"].solve(s["problem"].grad(s["w"]), 1e-6)


@lesson("damping", 0)
def _(d):
    from curvlab.dashboards.damping_figs import NEWTON
    assert d.step.cos_gradient > 0.999                                   # along −g at η = 100
    d.eta.value = 1e-6
    p, n = d.step.step, _newton(d)
    assert p @ n / (np.linalg.norm(p) * np.linalg.norm(n)) > 0.999        # Newton's at 1e-6
    s = d._state()
    assert np.abs(s["coords"][:, 0]).max() > s["span"]                    # beyond the frame:
    arrows = [a for a in d.plane_fig.layout.annotations if a.name == NEWTON]
    assert len(arrows) == 1 and f"‖p‖ = {np.linalg.norm(n):.3g}" in arrows[0].text


@lesson("damping", 1)
def _(d):
    s, eta = d._state(), d.eta.value
    assert eta == 100 and s["nu"].max() < eta / 50                         # far above every ν
    x, y = arr(d.filter_fig.data[0].x), arr(d.filter_fig.data[0].y)
    np.testing.assert_allclose(y, x / eta, rtol=0.02)                      # factors ≈ ν/η
    g = s["problem"].grad(s["w"])
    assert np.linalg.norm(d.step.step + g / eta) <= 0.02 * np.linalg.norm(g / eta)


@lesson("damping", 2)
def _(d):
    from curvlab.dashboards.damping_figs import ETAS
    pred, actual = arr(d.decrease_fig.data[0].y), arr(d.decrease_fig.data[1].y)
    rho = actual / pred
    assert np.all(np.abs(rho[ETAS >= 0.1] - 1) < 0.05)                    # agree at large η
    assert d.step.rho < 0.5 and f"ρ = {d.step.rho:.3f}" in d.readout.value  # part here
    assert actual[np.argmin(ETAS)] < 0                                    # negative at the end


@lesson("damping", 3)
def _(d):
    nu, eta = d._state()["nu"], d.eta.value
    assert nu.min() < 0 and eta < -nu.min()                                # C + ηI indefinite
    assert d.step.cos_gradient < 0 and "cos(p, −g) = -" in d.readout.value   # uphill
    d.kind.value = "ggn"
    assert d.status.error is None and np.all(arr(d.angle_fig.data[0].y) > 0)


@lesson("damping", 4)
def _(d):
    eta, rho = arr(d.lm_fig.data[0].y), arr(d.lm_fig.data[1].y)
    assert len(eta) == d.lm_steps.value
    moves = []
    for j in range(len(eta) - 1):
        if rho[j] > 0.75:
            assert eta[j + 1] < eta[j], j
            moves.append("fall")
        elif rho[j] < 0.25 or np.isnan(rho[j]):
            assert eta[j + 1] > eta[j], j
            moves.append("rise")
        else:
            assert eta[j + 1] == eta[j], j
    assert {"fall", "rise"} <= set(moves)
    assert d.player.step() and d.lm_k.value == 1 and "LM step 1" in d.readout.value   # ▶


# ---- trajectories ------------------------------------------------------------------------------

@lesson("trajectories", 0)
def _(d):
    assert np.isclose(d.hyper("gd")["lr"], 0.035)
    _, f, w0, _ = d._objective()
    lam, U = np.linalg.eigh(cl.hessian(f, w0))
    assert np.allclose(lam, [1, 50])
    gd, _ = d._runs["gd"]
    across = np.diff(gd.ws, axis=0) @ U[:, 1]                 # the steps' component across
    big = np.abs(across) > 1e-10
    assert big[:20].all() and np.all(across[:-1][big[:-1] & big[1:]]
                                     * across[1:][big[:-1] & big[1:]] < 0)
    newton, _ = d._runs["newton"]
    assert newton.losses[1] - d._floor() < 1e-12 * newton.losses[0]


@lesson("trajectories", 1)
def _(d):
    index = {t.name: i for i, t in enumerate(d.path_fig.data)}
    now = {m: (arr(d.path_fig.data[index[m]].x), arr(d.path_fig.data[index[m]].y))
           for m in ("gd", "newton")}
    assert any("newton leaves the frame" in n.text for n in d.path_fig.layout.annotations)
    d.reparam.value = False
    before = {m: (arr(d.path_fig.data[index[m]].x), arr(d.path_fig.data[index[m]].y))
              for m in ("gd", "newton")}
    assert np.allclose(now["newton"], before["newton"], atol=1e-6)
    assert not np.allclose(now["gd"][0], before["gd"][0], atol=1e-3)


@lesson("trajectories", 2)
def _(d):
    gd, _ = d._runs["gd"]
    assert "diverged" in gd.status and "diverged" in d.summary.value


@lesson("trajectories", 3)
def _(d):
    last = {m: t.losses[-1] for m, (t, _) in d._runs.items()}
    for m in ("natural_gradient", "kfac"):
        assert last[m] < min(last["gd"], last["adam"]), (m, last)
    per_step = {m: t.times[-1] / (len(t.losses) - 1) for m, (t, _) in d._runs.items()}
    assert per_step["natural_gradient"] > per_step["adam"]
    rows = table(d, d.summary)
    assert rows["natural_gradient"]["seconds"] > rows["adam"]["seconds"]


# ---- products ----------------------------------------------------------------------------------

@lesson("products", 0)
def _(d):
    r, err = arr(d.fd_fig.data[0].x), arr(d.fd_fig.data[0].y)
    best = r[np.argmin(err)]
    third = np.finfo(float).eps ** (1 / 3)
    assert third / 10 <= best <= third * 10
    assert err[0] > 100 * err.min() and err[-1] > 100 * err.min()          # a V


@lesson("products", 1)
def _(d):
    e = d.errors_at_r
    assert d.r.value == 0.01 and e["forward"] > 10 * e["central"]
    assert f"{e['central']:.2e} central, {e['forward']:.2e} forward" in d.readout.value
    r = arr(d.fd_fig.data[0].x)
    i, j = np.argmin(abs(r - 1e-3)), np.argmin(abs(r - 1e-1))
    for k, slope in ((0, 2), (1, 1)):
        y = arr(d.fd_fig.data[k].y)
        assert abs(np.log10(y[j] / y[i]) / np.log10(r[j] / r[i]) - slope) < 0.2


@lesson("products", 2)
def _(d):
    cg, kk = d.last_measurement
    K = cg["K"]
    assert K == 3 and "K = 3 outputs" in d.readout.value
    m, jac, rop = arr(d.cg_fig.data[0].x), arr(d.cg_fig.data[0].y), arr(d.cg_fig.data[1].y)
    assert np.all((jac < rop) == (m > K / 2)) and m[jac < rop].min() == 2
    mem = arr(d.k_fig.data[2].y)                                          # stored Jacobians, MB
    assert np.all(np.diff(mem) > 0)


# ---- beyond ------------------------------------------------------------------------------------

@lesson("beyond", 0)
def _(d):
    err = arr(d.relax_fig.data[0].y)
    assert len(err) == 1 and err[0] < 1e-12                                # one sweep: exact
    d.system.value = "recurrent units"
    k, err = arr(d.relax_fig.data[0].x), arr(d.relax_fig.data[0].y)
    assert err[-1] < 1e-10 < err[0]
    falling = err > 1e-12                                                   # above rounding
    slope, c = np.polyfit(k[falling], np.log10(err[falling]), 1)
    fit = slope * k[falling] + c
    resid = np.log10(err[falling]) - fit
    r2 = 1 - resid.var() / np.log10(err[falling]).var()
    assert slope < 0 and r2 > 0.95                                          # geometric


@lesson("beyond", 1)
def _(d):
    assert d.samples.value == 30
    assert all(-0.8 < s < -0.4 for s in d.slopes.values()), d.slopes
    assert all(f"{k} {v:.2f}" in d.status.html.value for k, v in d.slopes.items())


def _tail_slope(d, name):
    t = trace(d.err_fig, name)
    x, y = arr(t.x)[-3:], arr(t.y)[-3:]
    return np.polyfit(np.log10(x), np.log10(y), 1)[0]


@lesson("beyond", 2)
def _(d):
    assert d.sigma.value == 1
    assert _tail_slope(d, "per-weight ẑ ≈ Hv") > -0.15                      # levels off
    d.sigma.value = 0.01
    assert _tail_slope(d, "per-weight ẑ ≈ Hv") < -0.25                      # keeps falling


@lesson("beyond", 3)
def _(d):
    err = arr(d.relax_fig.data[0].y)
    i = np.argmin(err)
    assert 0 < i < len(err) - 1 and err[0] > 10 * err[i] and err[-1] > 10 * err[i]   # a V
    obj, w, _, v, Hv, _ = d._system()
    np.testing.assert_allclose(Hv, cl.hessian(obj, w) @ v, rtol=1e-8, atol=1e-12)   # R{p}: exact
