"""Every app in a real browser: it renders its plots; each control in the table below, moved
with the mouse or the keyboard, picked from a menu or clicked, changes what it must on its plot;
no error output appears; and a screenshot of each app is saved."""

import json
import re
from typing import Callable, NamedTuple

import numpy as np
import pytest

from .drive import (
    CLICK,
    FIND,
    RENDER_COUNTER,
    SETTLED,
    Drag,
    Plot,
    assert_no_errors,
    choose,
    expect_message,
    open_app,
    read,
    set_and_wait,
    set_control,
    set_readout,
    shot,
)

BENCH = FIND, RENDER_COUNTER, SETTLED, choose, set_readout   # bench/*.py import these from here


def heatmaps_are_curvature_blocks(page):
    """The heatmaps arrive as binary float32 rows: square, symmetric (a curvature block), not
    blank, and the diagonal approximation zero off its diagonal."""
    Z = np.array(json.loads(read(page, Plot("heatmaps", 0, "z"))))
    D = np.array(json.loads(read(page, Plot("heatmaps", 1, "z"))))
    assert Z.shape[0] == Z.shape[1] > 10 and np.abs(Z).max() > 0
    assert np.allclose(Z, Z.T, rtol=1e-6, atol=1e-7 * np.abs(Z).max())
    assert np.all(D[~np.eye(len(D), dtype=bool)] == 0) and np.abs(np.diag(D)).max() > 0
    assert page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                         ".find(e => (e.layout.title.text || '').includes('heatmaps'))"
                         ".data[0].z[0] instanceof Float32Array")


def one_mark_per_method(page):
    paths = page.locator(".js-plotly-plot", has=page.locator(".gtitle", has_text="paths"))
    assert paths.locator(".shapelayer path").count() == 5


class Step(NamedTuple):
    app: str
    control: str                  # its label (a button's or checkbox's: part of its text)
    value: object                 # typed into a slider's readout; a menu's option; Drag; CLICK
    must_change: Plot             # what the step must change
    then: Callable | None = None  # what must hold afterwards, besides


# Each app's controls in turn: the tests of one app share its page, opened once. A plot is found
# by a part of its title; Plot(title, trace, key) is trace `trace`'s data `key`.
STEPS = [
    Step("landscape", "span", Drag(60), Plot("1-D slice", 0, "x")),          # with the mouse
    Step("landscape", "d2", "gradient", Plot("2-D slice", 0, "z")),          # a new 2-D plane
    Step("spectra", "scope", "W1", Plot("eigenvalues", 0, "y")),
    Step("spectra", "approx.", "diagonal", Plot("heatmaps", 1, "z"), heatmaps_are_curvature_blocks),
    Step("damping", "damping η", "1.0e+1", Plot("filter factor", 0, "y")),
    Step("damping", "run Levenberg–Marquardt", CLICK, Plot("Levenberg", filled=True)),
    Step("trajectories", "reparameterise", CLICK, Plot("paths", 1, "x")),    # gradient descent
    Step("trajectories", "show step", 5, Plot("paths", key="marks"), one_mark_per_method),
    Step("products", "step r", "1e-2", Plot("against the step r", 2, "x")),
    Step("products", "measure Lin's two products", CLICK, Plot("against CG steps", filled=True)),
    Step("beyond", "Boltzmann machine", CLICK, Plot("relaxation", retitled="central differences")),
    Step("beyond", "σ", "1e-2", Plot("against samples", 2, "y")),
]
LAST = {s.app: s for s in STEPS}          # after an app's last step, its screenshot


def step_id(s):
    label = s.control.replace("η", "eta").replace("σ", "sigma").replace("'", "")
    label = re.sub(r"[^\w.]+", "_", label, flags=re.ASCII).strip("_")
    return f"{s.app}-{label}" + ("" if s.value == CLICK else f"={s.value}")


@pytest.mark.parametrize("step", STEPS, ids=step_id)
def test_a_control_changes_its_plot(app_page, step):
    page = app_page(step.app)
    assert_no_errors(page)
    set_and_wait(page, step.control, step.value, step.must_change)
    if step.then:
        step.then(page)
    assert_no_errors(page)
    if step is LAST[step.app]:
        shot(page, step.app)


def test_landscape_app_shows_bad_combinations_as_messages(page, voila_url):
    open_app(page, voila_url, "landscape")
    set_control(page, "data", "regression1d")          # with cross-entropy: impossible
    expect_message(page, "pick the mse loss")
    set_and_wait(page, "loss", "mse", Plot("1-D slice", 0, "y"))   # and the app keeps working
    assert_no_errors(page)


def test_landing_page_lists_every_app_with_a_picture_and_a_working_link(page, voila_url):
    from curvlab.dashboards import APPS
    page.goto(f"{voila_url}/voila/render/index.ipynb")
    page.wait_for_selector("text=curvature laboratory", timeout=120_000)
    for name in APPS:
        link = page.locator(f"h3 a[href='{name}.ipynb']")
        assert link.count() == 1, name
        img = page.locator(f"img[alt='{name} app']")
        assert img.count() == 1 and img.evaluate("i => i.complete && i.naturalWidth > 100"), name
    page.locator("h3 a[href='damping.ipynb']").click()
    page.wait_for_url("**/voila/render/damping.ipynb", timeout=60_000)
    assert_no_errors(page)
