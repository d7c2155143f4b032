"""Headless: drive each dashboard's widgets from Python and check the figures respond, view-only
controls hit the cache, and bad input becomes a message while the app keeps working."""

import html

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import pytest

import curvlab as cl
from curvlab.dashboards import (
    APPS,
    BeyondDashboard,
    DampingDashboard,
    LandscapeDashboard,
    ProductsDashboard,
    SpectraDashboard,
    TrajectoriesDashboard,
)


def arr(v):
    return np.array(v, dtype=float) if v is not None else np.zeros(0)


def changed(a, b):
    a, b = arr(a), arr(b)
    return a.shape != b.shape or not np.allclose(a, b, equal_nan=True)


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


@pytest.fixture(scope="module")
def landscape():
    return LandscapeDashboard()


def test_every_app_builds_without_error_and_draws():
    for name, cls in APPS.items():
        d = cls()
        assert d.status.error is None, (name, d.status.error)
        figs = [f for f in vars(d).values() if isinstance(f, go.FigureWidget)]
        assert figs and any(len(arr(t.y if t.type != "contour" else t.z))
                            for f in figs for t in f.data), name
        # the first draw reaches a view created later (plotly 6 sends updates as messages)
        assert any(len(arr(tr.get("y", tr.get("z")))) for f in figs for tr in f._widget_data), name
        # voila issue 1533: a FigureWidget inside a Tab does not render; we use none
        assert not any(isinstance(w, W.Tab) for w in walk(d.widget)), name
        # every figure fills a panel of a wrapping row (no fixed width), directly or in a box
        in_panels = {id(f) for w in walk(d.widget) if "curvlab-panel" in w._dom_classes
                     for f in walk(w)}
        rows = [w for w in walk(d.widget) if "curvlab-panels" in w._dom_classes]
        shown = {id(w) for w in walk(d.widget)}         # (a view may swap a figure out of its box)
        assert rows and all(id(f) in in_panels for f in figs if id(f) in shown), name
        assert all(f.layout.width is None for f in figs), name
        assert any(isinstance(w, W.HTML) and ".curvlab-panels" in w.value
                   for w in walk(d.widget)), name
        for f in figs:      # numbers print plain or as exponents (1e-06), never SI-prefixed (1µ)
            tpl = f.layout.template
            assert tpl.layout.xaxis.exponentformat == tpl.layout.yaxis.exponentformat == "e", name
            assert tpl.layout.scene.zaxis.exponentformat == "e"
            assert tpl.data.contour[0].colorbar.exponentformat == "e"
            axes = [v for k, v in f.layout.to_plotly_json().items()
                    if k.startswith(("xaxis", "yaxis"))]
            assert not any(a.get("exponentformat") in ("B", "SI") for a in axes), name
            assert sum("overlaying" in a for a in axes) <= 1, name    # at most one secondary axis
            if any(a.get("side") == "right" for a in axes):     # its labels: not under the legend
                assert f.layout.legend.orientation == "h" and f.layout.legend.y < 0, name
            # with its own few ticks (plotly otherwise syncs them to the main axis's: a dozen
            # overlapping labels when that one is logarithmic)
            assert all(a.get("tickmode") == "auto" and a.get("nticks", 99) <= 6
                       for a in axes if "overlaying" in a), name


def test_landscape_span_and_models(landscape):
    d = landscape
    x0, z0 = d.line_fig.data[0].x, d.contour_fig.data[0].z
    d.span.value = 0.5
    assert d.status.error is None
    assert changed(x0, d.line_fig.data[0].x) and changed(z0, d.contour_fig.data[0].z)
    d.models.value = ("hessian", "kfra")
    vis = {t.name: t.visible for t in d.line_fig.data[1:]}
    assert vis["kfra"] and vis["hessian"] and not vis["ggn"]
    assert len(d.line_fig.data[1 + d.kind_names.index("kfra")].y) == d.n.value
    assert "kfra" in d.fit.value


def test_landscape_model_contours_are_every_other_loss_level(landscape):
    loss, model = landscape.contour_fig.data
    assert model.contours.start == loss.contours.start and model.contours.end == loss.contours.end
    assert np.isclose(model.contours.size, 2 * loss.contours.size) and loss.contours.size > 0


def test_landscape_view_changes_do_not_recompute(landscape):
    d = landscape
    misses = d.cache.misses
    d.view.value = "surface"
    assert d.plane_box.children[0] is d.surface_fig
    d.shown.value = d.shown.options[-1]
    d.view.value = "contour"
    assert d.cache.misses == misses and d.status.error is None


def test_landscape_one_d_and_layer_directions(landscape):
    d = landscape
    d.d2.value = "none"
    assert d.plane_box.layout.display == "none"
    d.d1.value = "layer"
    assert "needs a layer" in d.status.error
    d.layer.value = 1
    assert d.status.error is None
    d.d1.value, d.d2.value, d.layer.value = "filter", "filter", -1


def test_bad_problem_combination_is_a_message_and_recovery_works(landscape):
    d = landscape
    d.picker.dataset.value = "regression1d"           # with cross_entropy: impossible
    assert d.status.error and "pick the mse loss" in d.status.error
    y_before = d.line_fig.data[0].y
    d.picker.loss.value = "mse"
    assert d.status.error is None and changed(y_before, d.line_fig.data[0].y)
    d.picker.dataset.value, d.picker.loss.value = "spirals", "cross_entropy"


def test_spectra_scope_kinds_compare_and_slq():
    d = SpectraDashboard()
    y0 = d.spec_fig.data[0].y
    d.scope.value = 0
    assert d.status.error is None and changed(y0, d.spec_fig.data[0].y)
    d.kinds.value = ("hessian", "kfac")
    visible = [t.name for t in d.spec_fig.data if t.visible]
    assert visible == ["hessian", "hessian (λ<0)", "kfac", "kfac (λ<0)"]
    z0 = d.heat_fig.data[1].z
    d.approx.value = "diagonal"
    z1 = arr(d.heat_fig.data[1].z)
    assert changed(z0, z1) and np.count_nonzero(z1 - np.diag(np.diag(z1))) == 0
    t0 = d.table.value
    d.damping.value = 1.0
    assert d.table.value != t0
    d.slq.value = True
    t, dens = arr(d.slq_fig.data[0].x), np.nan_to_num(arr(d.slq_fig.data[0].y))
    assert d.slq_fig.data[0].name == "hessian"
    assert len(t) > 10 and abs(np.trapezoid(dens, t) - 1) < 1e-3


def test_spectra_big_net_heatmap_is_a_block():
    d = SpectraDashboard(dataset="digits", arch="16")      # P = 64·17 + 16·... > 400
    assert d.status.error is None
    from curvlab.dashboards.heatmaps import HEAT_MAX
    assert arr(d.heat_fig.data[0].z).shape[0] <= HEAT_MAX
    assert "block W1" in d.heat_fig.layout.annotations[0].text


def test_damping_slider_moves_only_the_view():
    d = DampingDashboard()
    misses = d.cache.misses
    y0, step0 = d.filter_fig.data[0].y, d.step_at_eta()
    d.eta.value = 10.0
    assert d.cache.misses == misses and d.status.error is None
    assert changed(y0, d.filter_fig.data[0].y) and changed(step0, d.step_at_eta())
    assert np.all(arr(d.filter_fig.data[0].y) <= 1 + 1e-12)
    assert "ρ" in d.readout.value
    # the marks are numbers too: the step (a line and a disc at its end) and η's line in the CSV, no
    # legend-only NaN row
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(d.numbers_csv())))
    step = [r for r in rows if r["trace"] == "step at η"]
    assert [(float(r["x"]), float(r["y"])) for r in step] == [(0.0, 0.0), d.step_at_eta(),
                                                               d.step_at_eta()]
    eta = [r for r in rows if r["trace"] == "η" and r["panel"].startswith("angle")]
    assert len(eta) == 1 and float(eta[0]["x"]) == 10.0 and eta[0]["y"] == ""


def test_damping_lm_replay_and_bad_kind():
    d = DampingDashboard()
    d._on_lm()
    assert d.status.error is None and len(d.lm_fig.data[0].y) == d.lm_steps.value
    d.lm_k.value = 3
    assert "LM step 3" in d.readout.value
    d.kind.value = "hessian"            # its optimiser takes no adaptive damping: the GGN runs,
    d._on_lm()                          # and the panel and the status line say so
    assert d.status.error is None and d.lm_kind() == ("ggn", "gauss_newton")
    assert "with the ggn" in d.lm_fig.layout.title.text and "with the ggn" in d.status.html.value
    d.kind.value = "kflr"
    d._on_lm()
    assert d.status.error is None and d.lm_kind()[0] == "kflr"
    assert d.lm_fig.layout.title.text == "Levenberg–Marquardt replay"


def test_trajectories_runs_reparameterisation_and_view():
    d = TrajectoriesDashboard()
    index = {m: 1 + i for i, m in enumerate(d.methods.options)}
    before = {m: arr(d.path_fig.data[index[m]].x) for m in ("newton", "gauss_newton")}
    gd_x = arr(d.path_fig.data[1].x)
    d.reparam.value = True
    assert d.status.error is None
    for m, x in before.items():                                  # Newton, Gauss-Newton: invariant
        assert np.allclose(arr(d.path_fig.data[index[m]].x), x, atol=1e-6), m
    assert changed(gd_x, d.path_fig.data[1].x)                  # gradient descent: not
    misses = d.cache.misses
    d.k.value = 7
    assert d.cache.misses == misses and len(d.step_marks()) == len(d.methods.value)
    gd, ws = d._runs["gd"]                 # gd's iterate 7, in the original coordinates w = R w̃
    assert np.allclose(d.step_marks()["gd"], ws[7]) and not np.allclose(gd.ws[7], ws[7])
    d.reparam.value = False
    d.mode.value = "network"
    assert d.status.error is None and d.path_box.layout.display == "none"
    d.methods.value = ("adam", "kflr", "hessian_free")
    assert len(d.iter_fig.data[list(d.methods.options).index("kflr")].y) == d.steps.value + 1


def test_trajectories_divergence_is_reported_not_raised():
    d = TrajectoriesDashboard()
    d.methods.value = ("gd",)
    d.lr_scale.value = 10.0
    assert d.status.error is None and "diverged" in d.summary.value


def test_products_fd_curve_and_measurement():
    d = ProductsDashboard()
    c = arr(d.fd_fig.data[0].y)
    assert c.min() < 1e-6 < c.max()                              # a U: truncation and rounding
    m0 = d.fd_fig.data[2].x
    d.r.value = 1e-2
    assert changed(m0, d.fd_fig.data[2].x)
    d._on_measure()
    assert d.status.error is None
    assert len(d.cg_fig.data[0].y) == 7 and len(d.k_fig.data[1].y) == 6
    cg, kk = d.last_measurement
    assert kk["jacobian"][1][-1] > kk["jacobian"][1][0]          # stored Jacobians grow with K


def test_only_one_live_figure_carries_plotly_js():
    # each FigureWidget sending its own copy of plotly.js left later figures frozen in Voila. By
    # default none carries it: every figure's module imports it from the server (the loader);
    # with CURVLAB_PLOTLY_BUNDLE=kernel one live figure carries it (tests/test_deploy.py, which
    # also counts the bytes each figure's widget sends when it opens)
    from curvlab.dashboards import bundle
    from curvlab.dashboards.figure import FigureWidget
    d = DampingDashboard()
    esms = [f._esm for f in vars(d).values() if isinstance(f, FigureWidget)]
    assert bundle.MODE == "server" and len(esms) >= 5
    assert all(e == bundle.LOADER_ESM for e in esms) and len(bundle.LOADER_ESM) < 2000


# beyond and uncertainty: no data/architecture picker (uncertainty has its own two problems);
# dynamics: training a conv net on digits takes half a minute (its own tests cover its picker)
@pytest.mark.parametrize("name", sorted(set(APPS) - {"beyond", "uncertainty", "dynamics"}))
def test_every_app_offers_the_conv_net_on_digits(name):
    d = APPS[name]()
    if name == "trajectories":
        d.steps.value = 10                          # Newton on P = 690: a dense Hessian per step
        d.mode.value = "network"
    figs = [f for f in vars(d).values() if isinstance(f, go.FigureWidget)]
    before = [[arr(t.y if t.type != "contour" else t.z).copy() for t in f.data] for f in figs]
    d.picker.dataset.value = "digits"
    d.picker.arch.value = "conv"
    assert d.status.error is None, d.status.error
    problem, _ = d.picker.get()
    assert type(problem.model.layers[0]).__name__ == "Conv2d"
    after = [[arr(t.y if t.type != "contour" else t.z) for t in f.data] for f in figs]
    assert any(changed(a, b) for fa, fb in zip(before, after) for a, b in zip(fa, fb)), name
    d.picker.dataset.value = "spirals"                 # conv needs 8×8 images: a message
    assert "8×8 images" in d.status.error


def test_spectra_takes_your_matrix_as_a_file():
    import io
    d = SpectraDashboard()
    problem, w = d.picker.get()
    M = cl.kflr(problem, w).to_dense() + 0.5 * np.eye(problem.n_params)
    buf = io.BytesIO()
    np.save(buf, M)
    d.load_matrix("mine.npy", buf.getvalue())
    assert d.status.error is None, d.status.error
    assert "yours (mine.npy)" in d.table.value and d.approx.value == "yours"
    trace = [t for t in d.spec_fig.data if t.name == "yours"][0]
    assert trace.visible and np.allclose(np.sort(arr(trace.y)[~np.isnan(arr(trace.y))]),
                                         np.sort(np.abs(np.linalg.eigvalsh(M))), rtol=1e-10)
    buf = io.BytesIO()
    np.savez(buf, M=np.eye(problem.n_params + 1))
    import datetime
    d.upload.value = ({"name": "wrong.npz", "type": "", "size": 1,
                       "content": memoryview(buf.getvalue()),
                       "last_modified": datetime.datetime.now()},)
    assert "but the problem has P" in d.status.error            # a message, not a traceback
    d.picker.arch.value = "16"                          # another problem: the matrix is dropped
    assert d.uploaded is None and "yours" not in d.kinds.options and d.status.error is None


def test_an_unadapted_plotly_bundle_falls_back_to_plotlys_own_widget(monkeypatch):
    from curvlab.dashboards import bundle, figure
    with pytest.warns(RuntimeWarning, match="not the one curvlab adapts"):
        assert bundle.patch("export{renamed as default};") is None
    assert bundle.FULL_ESM is not None and "__curvlabPlotlyWidget" in bundle.FULL_ESM
    monkeypatch.setattr(bundle, "FULL_ESM", None)
    fig = figure.FigureWidget(data=[go.Scatter(x=[0, 1], y=[1, 0])])
    assert fig._esm == go.FigureWidget()._esm            # plotly's own module, and it still works
    fig.data[0].y = np.array([2.0, 3.0])
    assert list(fig.data[0].y) == [2.0, 3.0]


def test_beyond_systems_sigma_and_samples():
    d = BeyondDashboard()
    assert d.status.error is None, d.status.error
    relax = arr(d.relax_fig.data[0].y)
    assert relax[-1] < 1e-10 < relax[0]           # the R-relaxation converges to the exact Hv
    d.system.value = "Boltzmann machine"
    assert d.status.error is None and changed(relax, d.relax_fig.data[0].y)
    err = arr(d.err_fig.data[2].y)                            # the joint ẑ's error against samples
    d.sigma.value = 0.01
    assert changed(err, d.err_fig.data[2].y)
    misses = d.cache.misses
    d.samples.value = 100                     # view only: the marker moves, nothing recomputed
    crosses = d.crosses()
    assert d.cache.misses == misses and [x for x, _ in crosses.values()] == [100.0] * 4
    i = 1                                                     # SAMPLES[1] == 100: on each curve
    assert np.allclose([crosses[t.name][1] for t in d.err_fig.data[:4]],
                       [arr(t.y)[i] for t in d.err_fig.data[:4]])
    P = len(d._system()[1])                                   # the curves sit at the samples used:
    assert list(arr(d.err_fig.data[0].x)) == [max(S, 2 * P + 1) for S in (30, 100, 300, 1000, 3000)]
    d.system.value = "recurrent units"             # (P = 20 here: the joint fit's 2P + 1 = 41)
    assert arr(d.err_fig.data[0].x)[0] == 2 * len(d._system()[1]) + 1 > 30
    joint = arr(d.err_fig.data[2].y)
    assert joint[-1] < joint[0]                               # more samples, a better Hv estimate


@pytest.mark.parametrize("name", ["landscape", "spectra", "damping", "trajectories", "products",
                                  "beyond"])
def test_every_dashboard_opens_on_your_own_problem(name):
    X, y = cl.datasets.moons(n=40, seed=3)
    model = cl.MLP([2, 5, 2], activation="sigmoid")
    p = cl.Problem(model, "cross_entropy", X, y)
    w = model.init(seed=7)
    cls = {d.__name__.lower().removesuffix("dashboard"): d for d in
           (LandscapeDashboard, SpectraDashboard, DampingDashboard, TrajectoriesDashboard,
            ProductsDashboard, BeyondDashboard)}[name]
    dash = cls(problem=p, w=w)
    assert dash.status.error is None, dash.last_traceback
    got_p, got_w = dash.picker.get()
    assert got_p is p and np.array_equal(got_w, w)
    shown = dash.picker.widget.value
    assert "your problem" in shown and f"P = {p.n_params}" in shown
    if name == "spectra":                # the matrices it shows are this problem's
        np.testing.assert_allclose(dash._matrix("hessian").to_dense(), cl.hessian(p, w), rtol=1e-12)
    if name == "beyond":                 # this problem's exact Hv, against its finite differences
        _, w_, g, v, Hv, _ = dash._system()
        assert dash.system.value == "your problem" and np.array_equal(w_, w)
        np.testing.assert_allclose(Hv, cl.hessian(p, w) @ v, rtol=1e-10)
        assert min(arr(dash.relax_fig.data[0].y)) < 1e-7
        assert "central differences" in dash.relax_fig.layout.title.text
    # the same from (model, X, y, loss), and bad input is refused by name
    assert cls(model=model, X=X, y=y, loss="cross_entropy").picker.get()[0].N == 40
    with pytest.raises(ValueError, match="parameters|shape"):
        cls(problem=p, w=np.zeros(3))
    with pytest.raises(TypeError, match="cl.Problem"):
        cls(problem="moons")
    with pytest.raises(ValueError, match="either problem= or model="):
        cls(problem=p, X=X)


def test_every_panel_has_a_caption_and_every_app_a_try_this_list():
    for name, cls in APPS.items():
        d = cls()
        figs = {k: f for k, f in vars(d).items() if isinstance(f, go.FigureWidget)}
        assert set(figs) == set(cls.CAPTIONS), (name, set(figs) ^ set(cls.CAPTIONS))
        assert all(len(d.caption(k)) > 60 for k in figs), name
        assert 3 <= len(cls.TRY_THIS) <= 5, name
        shown = [w for w in walk(d.widget) if isinstance(w, W.HTML) and "What you see" in w.value]
        assert len(shown) == 1, name
        for k, f in figs.items():          # each panel's title and caption are on the page
            assert html.escape(d.panel_label(k)) in shown[0].value, (name, k)
            assert html.escape(d.caption(k)) in shown[0].value, (name, k)
        assert "Try this" in shown[0].value and "mathjax" not in shown[0].value.lower()


def test_the_numbers_csv_holds_what_is_plotted_and_figures_save_at_slide_width(landscape):
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(landscape.numbers_csv())))
    loss = [r for r in rows if r["panel"].startswith("1-D slice") and r["trace"] == "loss"]
    np.testing.assert_array_equal([float(r["y"]) for r in loss], landscape.line_fig.data[0].y)
    grid = [r for r in rows if r["panel"].startswith("2-D slice: loss") and r["trace"] == "loss"]
    assert len(grid) == np.size(landscape.contour_fig.data[0].z)
    for f in (landscape.line_fig, landscape.contour_fig):
        opts = f._config["toImageButtonOptions"]       # laid out at half width, scaled ×2: the
        assert opts["format"] == "png" and opts["width"] * opts["scale"] >= 1600   # text too
        assert opts["scale"] == 2 and not f._config["showSendToCloud"]


def _notes(fig, name):
    return [a.text for a in fig.layout.annotations if a.name == name]


def test_a_failed_computation_marks_every_plot_not_current_until_the_next_success(landscape):
    from curvlab.dashboards.marks import STALE
    d = landscape
    d.picker.dataset.value = "regression1d"                       # with cross-entropy: impossible
    assert "pick the mse loss" in d.status.error
    assert all(_notes(f, STALE) == ["not current: see the message above"] for f in d.figures())
    d.picker.loss.value = "mse"
    assert d.status.error is None and not any(_notes(f, STALE) for f in d.figures())
    d.picker.dataset.value, d.picker.loss.value = "spirals", "cross_entropy"


def test_panels_that_need_a_button_say_so_and_say_when_they_are_out_of_date():
    from curvlab.dashboards.marks import PLACEHOLDER
    p = ProductsDashboard()
    assert all("press “measure" in n for f in (p.cg_fig, p.k_fig) for n in _notes(f, PLACEHOLDER))
    p._on_measure()
    assert not _notes(p.cg_fig, PLACEHOLDER) and not _notes(p.k_fig, PLACEHOLDER)
    p.picker.dataset.value = "moons"
    assert _notes(p.cg_fig, PLACEHOLDER) == [
        "measured for another problem: press “measure Lin's two products”"]
    d = DampingDashboard()
    assert _notes(d.lm_fig, PLACEHOLDER) == ["press “run Levenberg–Marquardt” to fill this panel"]
    d._on_lm()
    assert not _notes(d.lm_fig, PLACEHOLDER)
    d.kind.value = "kflr"
    assert _notes(d.lm_fig, PLACEHOLDER) == [
        "run for other settings: press “run Levenberg–Marquardt”"]


def test_presentation_doubles_fonts_and_lines_and_goes_back():
    for name, cls in APPS.items():
        d = cls()
        figs = d.figures()
        widths = [[t.line.width for t in f.data if getattr(t, "line", None) is not None]
                  for f in figs]
        d.presentation.value = True
        assert all(f.layout.font.size == 24 for f in figs), name
        for f, before in zip(figs, widths):
            after = [t.line.width for t in f.data if getattr(t, "line", None) is not None]
            assert all(a == 2 * (b or 2) for a, b in zip(after, before)), name
        d.presentation.value = False
        assert all(f.layout.font.size is None for f in figs), name


def test_presentation_draws_the_moving_marks_twice_as_large_now_and_after_a_move():
    d = TrajectoriesDashboard()
    radius = lambda: {s.x1 for s in d.path_fig.layout.shapes if (s.name or "").startswith("step k")}
    assert radius() == {6}
    d.presentation.value = True
    assert radius() == {12}
    d.k.value = 9                                        # marks drawn afresh keep the larger size
    assert radius() == {12} and len(d.step_marks()) == len(d.methods.value)
    d.presentation.value = False
    assert radius() == {6}
    from curvlab.dashboards import BeyondDashboard
    b = BeyondDashboard()
    b.presentation.value = True
    paths = {s.path for s in b.err_fig.layout.shapes if (s.name or "").startswith("now")}
    assert paths == {"M-12,-12L12,12M-12,12L12,-12"}


def test_two_d_plot_data_travels_as_binary_float32_rows():
    from curvlab.dashboards.figure import _py_to_js
    Z = np.random.default_rng(0).standard_normal((4, 3))
    out = _py_to_js({"z": [Z], "x": np.arange(3.0), "name": "a"}, None)
    rows = out["z"][0]
    assert [r["dtype"] for r in rows] == ["float32"] * 4 and all(r["shape"] == (3,) for r in rows)
    back = np.array([np.frombuffer(r["buffer"], dtype=np.float32) for r in rows])
    assert np.allclose(back, Z, rtol=1e-7) and back.dtype == np.float32
    assert out["x"]["dtype"] == "float64" and out["name"] == "a"     # 1-D data as plotly sends it
    assert _py_to_js(np.eye(2, dtype=int), None) == [[1, 0], [0, 1]]    # non-float 2-D: lists
    d = SpectraDashboard()                                               # a figure's state uses it
    state = d.heat_fig.get_state("_widget_data")["_widget_data"]
    assert isinstance(state[0]["z"][0]["buffer"], memoryview)


def test_beyond_opens_on_your_network_of_units_and_refuses_a_problem_too_large_for_perturbation():
    rng = np.random.default_rng(0)
    net = cl.UnitNetwork(5, [(0, 2), (1, 2), (2, 3), (3, 4), (4, 2)], [0, 1], [4], "tanh",
                         tol=1e-13)
    p = cl.Problem(net, "mse", rng.standard_normal((10, 2)), rng.standard_normal((10, 1)))
    d = BeyondDashboard(problem=p, w=0.5 * net.init(0))
    assert d.status.error is None, d.last_traceback
    relax = arr(d.relax_fig.data[0].y)                        # a recurrent net: relaxation steps
    assert "R-relaxation" in d.relax_fig.layout.title.text and relax[-1] < 1e-10 < relax[0]
    assert "UnitNetwork(5 units" in d.picker.widget.value
    big = cl.MLP([20, 30, 10])
    with pytest.raises(ValueError, match="P ≤ 400"):
        BeyondDashboard(model=big, X=rng.standard_normal((4, 20)), y=np.arange(4),
                        loss="cross_entropy")
