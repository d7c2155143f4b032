"""Shareable links, headless: control names, applying a query string, the link of a view and
its round trip, and bad input as a message."""

import ipywidgets as W
import pytest

from curvlab.dashboards import APPS, DampingDashboard, LandscapeDashboard, TrajectoriesDashboard
from curvlab.dashboards.links import key, link_box, view_controls


@pytest.mark.parametrize("description,name", [("data", "data"), ("damping η", "damping"),
                                              ("lr × ", "lr"), ("step r", "step-r"),
                                              ("SLQ density (matrix-free)", "slq-density"),
                                              ("reparameterise: w = R w̃ (affine)",
                                               "reparameterise"),
                                              ("approx.", "approx"), ("σ", "sigma")])
def test_control_names(description, name):
    assert key(description) == name


def test_every_app_names_its_view_controls_uniquely():
    for name, cls in APPS.items():
        d = cls()
        names = list(view_controls(d))
        assert len(names) == len(set(names)) >= 2, name
        assert all(n and n == n.lower() for n in names), name


def test_a_query_sets_controls_picker_first_and_the_view_follows():
    d = LandscapeDashboard()
    assert d.apply_query("?span=2.5&data=moons&layer=W2&models=hessian,kfac&d2=none") == []
    assert (d.picker.dataset.value, d.layer.label, d.span.value) == ("moons", "W2", 2.5)
    assert d.models.value == ("hessian", "kfac") and d.d2.value == "none"
    assert d.line_fig.data[0].x[-1] == 2.5                          # recomputed for the view
    assert d.status.error is None


def test_the_default_view_links_to_no_change():
    for name, cls in APPS.items():
        d = cls()
        row = next(w for w in d.widget.children if isinstance(w, W.HBox) and any(
            isinstance(c, W.HBox) and any(getattr(b, "description", "") == "link to this view"
                                          for b in c.children)
            for c in w.children))
        box = next(c for c in row.children if isinstance(c, W.HBox) and any(
            getattr(b, "description", "") == "link to this view" for b in c.children))
        box.children[0].click()
        assert box.url.query == "?" and "(the default view" in box.note.value, name


def test_the_link_round_trips_and_carries_only_changes():
    d = DampingDashboard()
    box = link_box(d)
    d.eta.value, d.kind.value = 0.1, "hessian"
    box.children[0].click()
    href = box.url.query
    assert href.startswith("?") and "damping=0.1" in href and "matrix=hessian" in href
    assert "data=" not in href
    e = DampingDashboard()
    assert e.apply_query(href) == []
    assert (e.eta.value, e.kind.value) == (0.1, "hessian")
    t = TrajectoriesDashboard()                      # a whole link (every control) also round-trips
    t.apply_query("on=network&methods=gd,newton&lr=0.5&reparameterise=1&presentation=1")
    assert t.presentation.value and t.reparam.value
    u = TrajectoriesDashboard()
    u.apply_query(t.link())
    assert ({k: w.value for k, w in view_controls(u).items()}
            == {k: w.value for k, w in view_controls(t).items()})


def test_bad_values_are_one_message_and_keep_the_defaults():
    d = LandscapeDashboard()
    problems = d.apply_query("span=9&points=abc&d1=sideways&colour=red&seed=3")
    assert len(problems) == 4 and d.seed.value == 3                 # the good one applied
    assert (d.span.value, d.n.value, d.d1.value) == (1.0, 31, "filter")
    msg = d.status.error                                       # in plain words, no "ValueError"
    assert "this app has no control called 'colour'" in msg and "span goes from 0.05 to 5" in msg
    assert "points takes a whole number, not 'abc'" in msg and "d1 has no option 'sideways'" in msg
    assert "Error" not in d.status.html.value and msg.startswith("This link could not set")


def test_names_and_options_in_links_ignore_case():
    d = LandscapeDashboard()
    assert d.apply_query("D1=Gradient&Models=Hessian,GGN&DATA=Moons") == []
    assert (d.d1.value, d.models.value, d.picker.dataset.value) == (
        "gradient", ("hessian", "ggn"), "moons")
    assert d.status.error is None
