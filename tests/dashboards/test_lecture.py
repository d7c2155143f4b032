"""Headless: the apps in a lecture hall — presentation mode enlarges text, controls, status lines
and tables and gives each figure a whole row; the link is a full URL with a copy button; the
CSV downloads in one click with named traces and the tables; a saved PNG carries the settings
and presentation-sized fonts; replay sliders have a play button (one widget, shared)."""

import csv
import io

import ipywidgets as W
import numpy as np

from curvlab.dashboards import (
    APPS,
    DampingDashboard,
    LandscapeDashboard,
    SpectraDashboard,
    TrajectoriesDashboard,
)
from curvlab.dashboards.pagewidgets import DownloadButton, LinkBox
from curvlab.dashboards.play import Player
from curvlab.dashboards.widgets import PANEL_CSS


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def test_presentation_scales_controls_status_and_tables_and_gives_figures_room():
    d = SpectraDashboard()
    heights = [f.layout.height for f in d.figures()]
    d.presentation.value = True
    assert "curvlab-present" in d.widget._dom_classes
    scaled = [w for w in d.widget.children if "curvlab-scale" in w._dom_classes]
    assert d.status.widget in scaled and any(d.picker.widget in walk(w) for w in scaled)
    assert "curvlab-scale" in d.table._dom_classes                       # the table, in a panel
    assert [f.layout.height for f in d.figures()] == [round(h * 1.5) for h in heights]
    assert all(f.layout.font.size == 24 for f in d.figures())
    assert ".curvlab-present .curvlab-scale { zoom:" in PANEL_CSS          # the rules that do it
    assert ".curvlab-present .curvlab-panels > .curvlab-panel { flex-basis: 100%; }" in PANEL_CSS
    d.presentation.value = False
    assert "curvlab-present" not in d.widget._dom_classes
    assert [f.layout.height for f in d.figures()] == heights


def test_the_link_is_the_full_url_with_a_copy_button():
    d = LandscapeDashboard()
    box = next(w for w in walk(d.widget) if hasattr(w, "url") and isinstance(w.url, LinkBox))
    d.span.value = 2.5
    box.children[0].click()
    assert box.url.query == "?span=2.5"
    esm = LinkBox._esm                 # the page writes its own address before the query
    assert "location.origin + location.pathname" in esm and "clipboard.writeText" in esm
    assert "'copy'" in esm


def test_the_csv_downloads_in_one_click_with_named_traces_and_the_tables():
    d = SpectraDashboard()
    assert isinstance(d.csv, DownloadButton) and d.csv.description == "numbers as CSV"
    sent = []
    d.csv.send = lambda content, buffers=None: sent.append(content)
    d.csv._on_msg(d.csv, {"event": "make"}, [])                          # what one press sends
    assert len(sent) == 1 and sent[0]["name"] == "curvlab-spectra.csv"
    rows = list(csv.reader(io.StringIO(sent[0]["text"])))
    assert rows[0] == ["panel", "trace", "i", "x", "y", "z"]
    traces = {r[1] for r in rows[1:]}
    assert not any(t.startswith("trace ") for t in traces)
    assert {"exact ggn", "kflr", "kflr − ggn"} <= traces                   # the heatmaps, named
    table = [r for r in rows if r[0] == "approximation quality"]
    assert {r[3] for r in table} >= {"rel. Frobenius", "log det ratio"} and len(table) >= 50
    kfac = [r for r in table if r[1] == "kfac" and r[3] == "rel. Frobenius"]
    assert float(kfac[0][4]) == d.tables[id(d.table)][2][0][2]


def test_a_saved_png_carries_the_settings_and_presentation_fonts():
    d = DampingDashboard()
    for f in d.figures():
        opts = f._config["toImageButtonOptions"]
        assert opts["width"] * opts["scale"] >= 1600 and opts["scale"] == 2
        assert f.layout.title.subtitle.text == "spirals · 8 · tanh · cross_entropy · part-trained"
        assert f.layout.margin.t >= 60
    d.apply_query("matrix=hessian&damping=0.1")
    text = d.lm_fig.layout.title.subtitle.text
    assert text.endswith("· matrix hessian · damping 0.1"), text
    d.presentation.value = True
    assert d.lm_fig.layout.title.subtitle.font.size == 22


def test_replay_sliders_have_one_shared_play_button():
    d, t = DampingDashboard(), TrajectoriesDashboard()
    assert isinstance(d.player, Player) and isinstance(t.player, Player)
    assert d.player.slider is d.lm_k and t.player.slider is t.k
    assert d.player.play in d.player.widget.children and d.player.widget in walk(d.widget)
    d._on_lm()
    assert d.player.play.max == d.lm_k.max == d.lm_steps.value
    readouts = []
    while d.player.step():
        readouts.append(d.readout.value)
    assert d.lm_k.value == d.lm_k.max and len(set(readouts)) == d.lm_k.max
    marks = []
    for _ in range(3):
        t.player.step()
        marks.append(t.step_marks()["gd"])
    assert t.k.value == 3 and len(set(marks)) == 3                        # each step drawn
    for name, cls in APPS.items():             # the play button is no control of a link
        assert not any(isinstance(w, W.Play) and w.description for w in walk(cls().widget)), name


def test_lessons_are_links_in_the_try_this_list():
    d = DampingDashboard()
    html = d.widget.children[-2].value
    assert html.count("class='curvlab-lesson'") == len(d.TRY_THIS) == 5
    assert 'href="?run=lm"' in html and "target='_self'" in html
    assert np.isfinite(d.eta.value)
