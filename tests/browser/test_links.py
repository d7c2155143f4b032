"""Shareable links in a real browser, with Voila's preheated kernels: a query string sets the
app's controls (three apps, three controls each), the 'link to this view' button writes a link
that restores the view, and bad values give a message instead of a broken page."""

import pytest

from .drive import (
    Plot,
    assert_no_errors,
    control,
    expect_message,
    menu,
    open_app,
    readout,
    set_and_wait,
    x_max,
)


def shown(page, label):
    """What the control labelled `label` shows: a slider's readout, a menu's option."""
    return readout(page, label) if control(page, label)[0] == "slider" else menu(page, label)


def span_is_plotted(page):
    assert abs(x_max(page, "1-D slice") - 2.5) < 1e-9             # the plot is of that view


def at_step(page, step):
    """The picker's step box shows `step` (a step of the recorded training run), and its state
    menu says it is none of the shortcuts (the menu shows spaces as no-break spaces)."""
    box = page.locator(".widget-text:has(> label:text-is('step')) input")
    assert box.input_value() == str(step)
    assert menu(page, "state").replace("\xa0", " ") == "other step"


# (app, query, what each control must show: a number to 1e-9, text exactly, then what else holds)
LINKS = [
    pytest.param("landscape", "?data=moons&d1=gradient&span=2.5",
                 {"data": "moons", "d1": "gradient", "span": 2.5}, span_is_plotted, id="landscape"),
    pytest.param("spectra", "?data=xor&scope=W1&approx=kfra",
                 {"data": "xor", "scope": "W1", "approx.": "kfra"}, None, id="spectra"),
    pytest.param("damping", "?matrix=hessian&damping=0.1&lm-steps=20&step=1000",
                 {"matrix": "hessian", "damping η": 0.1, "LM steps": "20"},
                 lambda page: at_step(page, 1000), id="damping"),
]


@pytest.mark.parametrize("app, query, controls, then", LINKS)
def test_a_link_sets_the_view(page, voila_url, app, query, controls, then):
    open_app(page, voila_url, app, query)
    for label, want in controls.items():
        got = shown(page, label)
        ok = abs(float(got) - want) < 1e-9 if isinstance(want, float) else got == want
        assert ok, (label, got, want)
    if then:
        then(page)
    assert_no_errors(page)


def test_the_link_button_round_trips_the_view(page, voila_url):
    open_app(page, voila_url, "landscape")
    set_and_wait(page, "span", "3.3", Plot("1-D slice", 0, "x"))
    set_and_wait(page, "d2", "gradient", Plot("2-D slice", 0, "z"))
    page.get_by_role("button", name="link to this view").click()
    page.wait_for_function("() => (document.querySelector('input.curvlab-url') || {}).value"
                           "?.includes('span=3.3')", timeout=30_000)
    url = page.locator("input.curvlab-url").input_value()
    base = f"{voila_url}/voila/render/landscape.ipynb"
    assert url.startswith(base + "?") and "span=3.3" in url and "d2=gradient" in url
    assert "data=" not in url
    fresh = page.context.new_page()
    open_app(fresh, voila_url, "landscape", url[len(base):])
    assert abs(x_max(fresh, "1-D slice") - 3.3) < 1e-9 and menu(fresh, "d2") == "gradient"
    assert_no_errors(fresh)


def test_a_bad_link_is_a_message_and_the_app_works(page, voila_url):
    open_app(page, voila_url, "landscape", "?span=wide&colour=red&D1=Gradient")
    expect_message(page, "This link could not set everything")
    body = page.inner_text("body")
    assert "this app has no control called 'colour'" in body and "ValueError" not in body
    assert "span takes a number, not 'wide'" in body
    assert menu(page, "d1") == "gradient"                 # the good part, in any case, applied
    set_and_wait(page, "span", "2.0", Plot("1-D slice", 0, "x"))
