"""What a page that opens later reads of a figure: JupyterLab reopening or reloading a notebook
whose kernel runs asks the kernel for every widget's state (ipywidgets' control comm,
'request_states') and draws each figure from it. That state must be the figure as it is now,
after any update, and a control set back to its first value must redraw; and what the page gets
has titles that fit a panel."""

import re

import ipywidgets as W
import numpy as np
import pytest
from ipywidgets.widgets.widget import _put_buffers

from curvlab.dashboards import LandscapeDashboard, SpectraDashboard
from curvlab.dashboards.figure import wrap
from curvlab.dashboards.widgets import table_html


class _Comm:
    def __init__(self):
        self.sent = []

    def send(self, data, buffers=None):
        self.sent.append((data, buffers))


def page_states():
    """{model id: state} as ipywidgets answers a page's 'request_states' (what JupyterLab asks
    when it opens a notebook whose kernel runs), buffers put back."""
    comm, saved = _Comm(), W.Widget._control_comm
    W.Widget._control_comm = comm
    try:
        W.Widget._handle_control_comm_msg({"content": {"data": {"method": "request_states"}}})
    finally:
        W.Widget._control_comm = saved
    (data, buffers), = comm.sent
    states = data["states"]
    _put_buffers(states, data["buffer_paths"], buffers)
    return {k: v["state"] for k, v in states.items()}


def plain(v):
    """A serialized value as plain numbers: a binary array ({dtype, shape, buffer}) and the
    binary rows of a 2-D one as numpy arrays, the rest as it is."""
    if isinstance(v, dict) and {"dtype", "buffer"} <= set(v):
        return np.frombuffer(bytes(v["buffer"]), dtype=v["dtype"]).reshape(v["shape"])
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        rows = [plain(x) for x in v]
        if rows and all(isinstance(r, np.ndarray) for r in rows) and isinstance(v[0], dict):
            return np.array(rows)
        return rows
    return v


def same(a, b, path=""):
    """Assert page value `a` (plain) equals figure value `b` (numbers to float32 precision: a
    2-D array travels as float32)."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and set(a) == set(b), (path, sorted(a), sorted(b))
        for k in b:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(b, np.ndarray) or isinstance(a, np.ndarray):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        assert a.shape == b.shape and np.allclose(a, b, rtol=1e-6, equal_nan=True), path
    elif isinstance(b, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


def assert_page_shows_figure(states, fig):
    """The figure's state in `states` draws `fig` as it is: every trace, and the layout apart
    from the title's line breaks and the top margin they add (tested below)."""
    state = states[fig.model_id]
    same(plain(state["_widget_data"]), fig._data, "data")
    layout = plain(state["_widget_layout"])
    title = layout.pop("title")
    assert title["text"].replace("<br>", " ") == (fig.layout.title.text or "")
    expected = dict(fig._layout_obj._props)
    expected_title = expected.pop("title", {})
    if "subtitle" in expected_title:
        assert (title["subtitle"]["text"].replace("<br>", " ")
                == expected_title["subtitle"]["text"])
    for lay in (layout, expected):
        lay["margin"] = {k: v for k, v in lay["margin"].items() if k != "t"}
    same(layout, expected, "layout")


@pytest.fixture(scope="module")
def landscape():
    return LandscapeDashboard()


def test_a_page_opened_after_a_control_changed_draws_the_figure_as_it_is_now(landscape):
    d = landscape
    n, first = d.n.value, d.span.value
    d.span.value = 2.5
    # the control's meaning (an independent reading): the 1-D slice is sampled at `points`
    # equally spaced a in [-span, span]
    x = np.asarray(d.line_fig.data[0].x)
    assert len(x) == n and np.allclose(x[[0, -1]], [-2.5, 2.5])
    states = page_states()
    for fig in d.figures():
        assert_page_shows_figure(states, fig)
    page_x = plain(states[d.line_fig.model_id]["_widget_data"])[0]["x"]
    assert np.allclose(page_x[[0, -1]], [-2.5, 2.5]) and len(page_x) == n
    # the state as the widget reports it key by key agrees too (what a display reads)
    assert np.allclose(plain(d.line_fig.get_state("_widget_data")["_widget_data"])[0]["x"], x)
    d.span.value = first


def test_setting_a_control_back_to_its_first_value_redraws_the_page(landscape):
    d = landscape
    first = d.span.value
    x0 = np.array(d.line_fig.data[0].x)
    sent = []
    d.line_fig.observe(lambda c: sent.append(c["new"]) if c["new"] else None,
                       names=["_py2js_update", "_py2js_restyle"])
    d.span.value = 0.5
    d.span.value = first                                   # back to the build-time value
    # the page was told to draw the first view again: the last x sent spans [-first, first]
    xs = [np.asarray(xs[0]) for m in sent
          for xs in [(m.get("style_data") or m.get("restyle_data") or {}).get("x")] if xs]
    assert len(xs) >= 2 and np.allclose(xs[-1][[0, -1]], [-first, first])
    assert np.allclose(xs[0][[0, -1]], [-0.5, 0.5])
    assert np.allclose(d.line_fig.data[0].x, x0)
    states = page_states()
    for fig in d.figures():
        assert_page_shows_figure(states, fig)


@pytest.mark.parametrize("text, limit", [
    ("eigenvalues by rank (|λ|, log scale; open markers: negative λ)", 52),
    ("Log marginal likelihood against the prior precision δ", 40),
    ("a short title", 52),
    ("one two three four five six seven eight nine ten eleven twelve thirteen", 20),
])
def test_a_title_wraps_into_lines_of_about_equal_length_within_the_limit(text, limit):
    out = wrap(text, limit)
    lines = out.split("<br>")
    assert " ".join(lines) == text                                   # nothing lost or added
    assert all(len(line) <= limit for line in lines)
    need = -(-len(text) // limit)                                    # the fewest lines possible
    assert len(lines) in (need, need + 1)
    if len(lines) > 1:                                               # balanced, not greedy
        assert max(map(len, lines)) - min(map(len, lines)) <= max(len(w) for w in
                                                                   text.split()) + 1


def test_the_page_gets_titles_that_fit_a_half_row_panel_and_the_figure_keeps_its_own():
    d = SpectraDashboard()
    fig = d.spec_fig
    python_title = "eigenvalues by rank (|λ|, log scale; open markers: negative λ)"
    assert fig.layout.title.text == python_title                     # the CSV and captions
    state = plain(fig.get_state()["_widget_layout"])
    lines = state["title"]["text"].split("<br>")
    # 16.8 px (plotly's title font) × 0.45 per character within 400 px: 52 characters a line
    assert len(lines) == 2 and all(len(line) <= 52 for line in lines)
    # the top margin grows by twice the added line (the first line sits at the margin's middle)
    assert state["margin"]["t"] == round(fig.layout.margin.t + 2 * 1.3 * 16.8)
    assert "<br>" not in plain(d.heat_fig.get_state()["_widget_layout"])["title"]["text"]
    # a relayout message carries the fitted title too, and a short title takes the margin back
    sent = []
    fig.observe(lambda c: sent.append(fig.trait_metadata("_py2js_relayout", "to_json")(
        c["new"], fig)) if c["new"] else None, names="_py2js_relayout")
    fig.layout.title.text = "eigenvalues"
    edit = sent[-1]["relayout_data"]
    assert edit["title.text"] == "eigenvalues" and edit["margin.t"] == fig.layout.margin.t
    fig.layout.title.text = python_title
    assert sent[-1]["relayout_data"]["title.text"] == state["title"]["text"]
    # presentation: each figure has a whole row, its title twice as much room in a larger font
    d.presentation.value = True
    page_title = plain(fig.get_state()["_widget_layout"])["title"]["text"]
    size = fig.layout.title.font.size
    assert size > 24 and all(len(line) * 0.45 * size <= 800   # twice 400 px
                             for line in page_title.split("<br>"))
    d.presentation.value = False


def test_a_wide_table_scrolls_in_its_box():
    out = table_html(["kind", "a very long column heading"], [["kfac", 1.0]])
    assert re.match(r"<div class='curvlab-table'><table .*</table></div>$", out)
    from curvlab.dashboards.widgets import PANEL_CSS
    assert re.search(r"\.curvlab-table \{[^}]*overflow-x: auto", PANEL_CSS)
