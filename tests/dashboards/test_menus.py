"""Headless: the dashboards' menus come from the registry's capabilities when a dashboard is
built, so a kind registered after import is offered (and one unregistered is gone)."""

import numpy as np

import curvlab as cl
from curvlab.curvature import registry
from curvlab.dashboards import DampingDashboard, LandscapeDashboard, SpectraDashboard
from curvlab.dashboards.menus import FALLBACK_COLOR, kind_color, kind_menu


def _toy(problem, w):
    return cl.as_matrix(2.0 * np.eye(problem.n_params), problem.n_params, "toy",
                        problem.model.layer_slices())


def test_a_kind_registered_after_import_appears_in_the_dashboards_menus():
    registry.register("toy", _toy, "toy kind", structure="dense")
    try:
        assert kind_menu()[-1] == "toy" and kind_color("toy") == FALLBACK_COLOR
        land = LandscapeDashboard()
        assert "toy" in land.models.options
        assert [t for t in land.line_fig.data if t.name == "toy"][0].line.color == FALLBACK_COLOR
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
