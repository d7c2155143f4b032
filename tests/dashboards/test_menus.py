"""Headless: the dashboards' menus come from the registry's capabilities when a dashboard is
built, so a kind registered after import is offered (and one unregistered is gone)."""

import numpy as np

import curvlab as cl
from curvlab.curvature import registry
from curvlab.dashboards import DampingDashboard, LandscapeDashboard, SpectraDashboard
from curvlab.dashboards.menus import KIND_STYLES, OKABE_ITO, kind_color, kind_menu, kind_style


def _toy(problem, w):
    return cl.as_matrix(2.0 * np.eye(problem.n_params), problem.n_params, "toy",
                        problem.model.layer_slices())


def test_a_kind_registered_after_import_appears_in_the_dashboards_menus():
    registry.register("toy", _toy, "toy kind", structure="dense")
    try:
        assert kind_menu()[-1] == "toy"
        assert kind_style("toy") not in {kind_style(k) for k in registry.kinds() if k != "toy"}
        land = LandscapeDashboard()
        assert "toy" in land.models.options
        toy_line = [t for t in land.line_fig.data if t.name == "toy"][0].line
        assert (toy_line.color, toy_line.dash) == kind_style("toy")
        land.models.value = ("hessian", "toy")                 # and it draws
        assert land.status.error is None, land.last_traceback
        toy = [t for t in land.line_fig.data if t.name == "toy"][0]
        assert toy.visible and len(toy.y) == land.n.value and "toy" in land.shown.options
        spectra = SpectraDashboard()
        assert "toy" in spectra.kinds.options and "toy" in spectra.approx.options
        spectra.kinds.value = ("toy",)
        assert spectra.status.error is None, spectra.last_traceback
        y = np.array([t for t in spectra.spec_fig.data if t.name == "toy"][0].y, dtype=float)
        assert np.allclose(y, 2.0)                              # the spectrum of 2 I
        assert "toy" in DampingDashboard().kind.options
    finally:
        registry.unregister("toy")
    assert "toy" not in kind_menu() and "toy" not in LandscapeDashboard().models.options


def test_menus_leave_out_only_single_draws_of_a_dense_matrix():
    menu = kind_menu()
    dropped = set(registry.kinds()) - set(menu)
    assert dropped == set(registry.kinds(sampled=True, structure="dense")) == {"mc_fisher"}
    assert {"kfac", "diag_ggn_mc", "empirical_fisher"} <= set(menu)    # other sampled kinds stay
    assert menu[:3] == ["hessian", "ggn", "fisher"]                      # colour order first


def test_the_lm_replay_offers_the_kinds_whose_optimiser_adapts_its_damping():
    from curvlab.dashboards.damping import lm_method
    from curvlab.dashboards.problems import problem_and_point
    problem, w = problem_and_point("spirals", "8", "tanh", "cross_entropy", "initialisation")
    able = {k: lm_method(k, problem, w) for k in kind_menu()}
    assert {k: able[k] for k in ("ggn", "fisher", "kfac", "kflr", "kfra")} == {
        "ggn": "gauss_newton", "fisher": "natural_gradient", "kfac": "kfac", "kflr": "kflr",
        "kfra": "kfra"}
    # Newton's and the diagonal method's settings take no adaptive damping; most kinds have no
    # optimiser of their own
    assert able["hessian"] is able["diagonal"] is able["kfoc"] is None


def test_every_kind_and_yours_has_its_own_colour_blind_safe_colour_and_line_style():
    names = list(registry.kinds()) + ["yours"]
    styles = [kind_style(k) for k in names]
    assert len(set(styles)) == len(styles), styles                       # unique pairs
    assert all(c in OKABE_ITO for c, _ in styles)                          # Okabe & Ito's colours
    assert set(KIND_STYLES) >= set(kind_menu())                            # the menus' kinds fixed
    land, spec = LandscapeDashboard(), SpectraDashboard()
    for t in land.line_fig.data[1:]:                                       # and drawn so
        assert (t.line.color, t.line.dash) == kind_style(t.name), t.name
    for t in spec.slq_fig.data:
        assert (t.line.color, t.line.dash) == kind_style(t.name), t.name
    registry.register("toy", _toy, "toy kind", structure="dense")
    registry.register("toy2", _toy, "toy kind", structure="dense")
    try:                                       # kinds registered later: the next free pairs
        more = [kind_style(k) for k in ("toy", "toy2")]
        assert len(set(styles + more)) == len(styles) + 2 and kind_color("toy") in OKABE_ITO
    finally:
        registry.unregister("toy")
        registry.unregister("toy2")
