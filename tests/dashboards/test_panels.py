"""Headless: panels that say what they show — damping's LM path with any matrix, axes that clip
and say so, every mark in the legend in a visible colour, the Newton step framed or arrowed;
SLQ over the chosen scope and matrices with no floor line, every eigenvalue shown or counted, the
comparison table's columns and nans explained, runaway models clipped with a note, the 3-D box
inside its panel, multi-selects that say how to pick several, products' counted costs."""

import ipywidgets as W
import numpy as np
import pytest

from curvlab.dashboards import (
    APPS,
    DampingDashboard,
    LandscapeDashboard,
    ProductsDashboard,
    SpectraDashboard,
)
from curvlab.dashboards.damping_figs import NEWTON, RHO_RANGE
from curvlab.dashboards.marks import notes
from curvlab.dashboards.widgets import MULTI_HINT


def arr(v):
    return np.array(v, dtype=float)


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


@pytest.fixture(scope="module")
def hessian_at_init():
    d = DampingDashboard()
    d.apply_query("matrix=hessian&state=initialisation")
    return d


# ---- damping -----------------------------------------------------------------------------------

def test_the_lm_replay_runs_for_every_matrix_it_offers(hessian_at_init):
    d = hessian_at_init
    d._on_lm()                                  # the Hessian: the GGN's run, with a note
    assert d.status.error is None and len(d.lm_fig.data[0].y) == d.lm_steps.value
    assert "with the ggn: the hessian's optimiser does not adapt η" in d.lm_fig.layout.title.text
    assert d.current_actions() == ["lm"] and "run=lm" in d.link()


def test_axes_that_follow_the_data_clip_and_say_so(hessian_at_init):
    d = hessian_at_init
    lo, hi = d.decrease_fig.layout.yaxis.range
    pred, actual = arr(d.decrease_fig.data[0].y), arr(d.decrease_fig.data[1].y)
    assert hi < 1 < pred.max()                     # the spike near η = −ν is not the axis
    hidden = int(np.sum(pred > hi))
    note = notes(d.decrease_fig, "clipped")[0]
    assert f"predicted: {hidden} points above the axis (up to {pred.max():.3g})" in note
    assert f"actual: {int(np.sum(actual < lo))} points below" in note
    factors = arr(d.filter_fig.data[1].y)                          # ν < 0: factors beyond [0, 1]
    assert "ν < 0" in notes(d.filter_fig, "clipped")[0] and (factors > 1.05).any()
    d._on_lm()
    rho = arr(d.lm_fig.data[1].y)
    outside = (rho < RHO_RANGE[0]) | (rho > RHO_RANGE[1])
    assert bool(notes(d.lm_fig, "clipped")) == bool(outside.any())


def test_every_mark_has_a_legend_entry_in_a_visible_colour():
    d = DampingDashboard()
    d._on_lm()
    legend = {f: {t.name for t in getattr(d, f).data if t.showlegend is not False}
              for f in d.named_figures()}
    assert {"ν > 0: ν/(ν+η)", "ν < 0 (at |ν|)"} <= legend["filter_fig"]
    assert "η on the slider" in legend["angle_fig"] and "η on the slider" in legend["decrease_fig"]
    assert {"steps for all η", "step at η", "LM path"} <= legend["plane_fig"]
    assert any(n.startswith(NEWTON) for n in legend["plane_fig"])
    assert "replay k" in legend["lm_fig"]
    for t in d.plane_fig.data[1:]:                 # no white swatch on the white legend
        color = (t.line.color if t.mode and "lines" in t.mode else t.marker.color) or ""
        assert color.lower() not in ("white", "#fff", "#ffffff"), t.name


def test_the_newton_step_is_framed_or_arrowed_with_its_length(hessian_at_init):
    d = DampingDashboard()                                     # GGN: ‖p‖ far beyond the frame
    s = d._state()
    x, y = s["coords"][:, 0]
    assert max(abs(x), abs(y)) > s["span"]
    arrow = [a for a in d.plane_fig.layout.annotations if a.name == NEWTON]
    assert len(arrow) == 1 and f"‖p‖ = {s['newton_norm']:.3g}" in arrow[0].text
    assert max(abs(arrow[0].x), abs(arrow[0].y)) <= s["span"]        # the arrow's head: inside
    assert np.sign(arrow[0].x) == np.sign(x) and np.sign(arrow[0].y) == np.sign(y)
    h = hessian_at_init._state()                               # Hessian: inside, a star
    hx, hy = h["coords"][:, 0]
    assert max(abs(hx), abs(hy)) <= h["span"]
    star = [sh for sh in hessian_at_init.plane_fig.layout.shapes if sh.name == NEWTON]
    assert len(star) == 1 and np.allclose((star[0].xanchor, star[0].yanchor), (hx, hy))
    assert not [a for a in hessian_at_init.plane_fig.layout.annotations if a.name == NEWTON]


# ---- spectra -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spectra():
    return SpectraDashboard()


def test_slq_follows_the_scope_and_the_matrices_and_draws_no_floor(spectra):
    d = spectra
    d.apply_query("slq-density=1&matrices=ggn,kflr,diagonal&scope=W2")
    shown = [t for t in d.slq_fig.data if t.visible]
    assert {t.name for t in shown} == {"ggn", "kflr", "diagonal"}
    assert "block W2" in d.slq_fig.layout.title.text
    for t in shown:
        x, y = arr(t.x), arr(t.y)
        lam = d._eigs(t.name, 1)                                  # the W2 block's eigenvalues
        drawn = x[~np.isnan(y)]
        assert drawn.min() <= lam.min() + 1e-9 and drawn.max() >= lam.max() - 1e-9, t.name
        assert drawn.max() < 1.2 * lam.max() + 0.1 * (lam.max() - lam.min()), t.name
        assert np.nanmin(y) >= 1e-6 * np.nanmax(y) * (1 - 1e-12), t.name   # no floor line
    d.apply_query("slq-density=0&scope=whole&matrices=hessian,ggn,kflr,kfra")


def test_every_eigenvalue_asked_for_is_shown_or_counted(spectra):
    d = spectra
    d.apply_query("state=initialisation&matrices=hessian,ggn,kflr")
    problem, _ = d.picker.get()
    for k in d.kinds.value:
        pos = [t for t in d.spec_fig.data if t.name == k][0]
        neg = [t for t in d.spec_fig.data if t.name == f"{k} (λ<0)"][0]
        drawn = int(np.sum(~np.isnan(arr(pos.y))) + np.sum(~np.isnan(arr(neg.y))))
        assert drawn + d.zeros.get(k, 0) == problem.n_params, k
    assert d.zeros["hessian"] > 0
    note = [a.text for a in d.spec_fig.layout.annotations if a.name == "zero"][0]
    assert f"hessian {d.zeros['hessian']}" in note and "zero to rounding" in note
    d.apply_query("state=part-trained&matrices=hessian,ggn,kflr,kfra")


def test_the_comparison_table_explains_each_column_and_its_nans(spectra):
    d = spectra
    _, header, rows = d.tables[id(d.table)]
    text = d.table.value
    for column in header[2:]:
        assert f"{column}:" in text, column
    assert "nan there means C + ηI or R + ηI is not positive definite" in text
    problem, w = d.picker.get()
    eta = d.damping.value
    for r in rows:                                       # each nan: one of them is indefinite
        if np.isnan(r[-1]):
            mins = [np.linalg.eigvalsh(d._dense(k)).min() for k in (r[0], r[1])]
            assert min(mins) + eta <= 0, r


# ---- landscape ---------------------------------------------------------------------------------

def test_a_runaway_model_is_clipped_with_a_note():
    d = LandscapeDashboard()
    d.apply_query("models=hessian,ggn,shampoo&d2=none")
    lo, hi = d.line_fig.layout.yaxis.range
    Z = arr(d.line_fig.data[0].y)
    shampoo = arr([t for t in d.line_fig.data if t.name == "shampoo"][0].y)
    assert lo < Z.min() and hi > Z.max() and shampoo.max() > hi      # the loss fits, shampoo not
    note = notes(d.line_fig, "clipped")[0]
    assert f"shampoo: {int(np.sum(shampoo > hi))} points above the axis" in note
    assert "hessian" not in note and "ggn" not in note


def test_the_surface_box_fits_its_panel():
    d = LandscapeDashboard()
    d.view.value = "surface"
    scene = d.surface_fig.layout.scene
    eye = np.array([scene.camera.eye.x, scene.camera.eye.y, scene.camera.eye.z])
    assert np.linalg.norm(eye) > np.linalg.norm([1.25, 1.25, 1.25])   # further than plotly's
    assert scene.aspectmode == "cube" and d.surface_fig.layout.height >= 440


def test_every_multi_select_says_how_to_pick_several():
    for name, cls in APPS.items():
        d = cls()
        for box in walk(d.widget):
            kids = list(getattr(box, "children", ()))
            for i, w in enumerate(kids):
                if isinstance(w, W.SelectMultiple):
                    assert i + 1 < len(kids) and MULTI_HINT in kids[i + 1].value, name


# ---- products ----------------------------------------------------------------------------------

def test_the_cost_panels_count_what_each_product_does(monkeypatch):
    """The sweeps plotted are those the library runs: counted here by wrapping the engine's
    backward and R-forward passes (each sweeps once per seed or direction)."""
    from curvlab import engine
    from curvlab.dashboards.products import _products, sweeps
    counted = {"n": 0}
    for fn in ("backward", "rforward"):
        real = getattr(engine, fn)

        def counting(*args, real=real, fn=fn, **kwargs):
            seeds = args[3] if fn == "backward" else args[3][0]
            counted["n"] += seeds.shape[0]
            return real(*args, **kwargs)
        monkeypatch.setattr(engine, fn, counting)
    d = ProductsDashboard()
    problem, w = d.picker.get()
    v = np.ones(problem.n_params)
    m_all, K = [1, 5, 20], 3
    for i, method in enumerate(("jacobian", "rop")):
        for m in m_all:
            counted["n"] = 0
            _products(problem, w, method, m, v)
            assert counted["n"] == sweeps(method, K, m), (method, m, counted["n"])
    monkeypatch.undo()
    d._on_measure()
    cg, kk = d.last_measurement
    assert list(arr(d.cg_fig.data[1].y)) == [2.0 * m for m in cg["steps"]]
    assert list(arr(d.cg_fig.data[0].y)) == [3.0] * len(cg["steps"])
    jac, rop = arr(d.k_fig.data[2].y), arr(d.k_fig.data[3].y)        # memory, MB, against K
    assert jac[-1] - jac[0] > 5 * (rop[-1] - rop[0]) > 0
