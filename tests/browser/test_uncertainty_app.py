"""The uncertainty app in a real browser (served from apps/uncertainty.ipynb): it renders its
plots; the prior slider, the kinds and the problem menu change what they must; leave-one-out
fills the influence table on a button press; a prior that makes the Hessian's Λ indefinite is a
message and the app keeps working; a "try this" link opens its view; a screenshot is saved."""

import json

import numpy as np

from .drive import (
    CLICK,
    RENDER_COUNTER,
    SETTLED,
    Plot,
    assert_no_errors,
    expect_message,
    read,
    set_and_wait,
    set_control,
    shot,
)

APP = "uncertainty"
FIGURES = 3                # FigureWidgets in the app (the confidence maps hidden at first)
BAND, MAPS, EVIDENCE = "Predictive band", "Confidence max p", "Log marginal likelihood"


def open_uncertainty(page, url, query=""):
    page.add_init_script(RENDER_COUNTER)
    page.goto(f"{url}/voila/render/{APP}.ipynb{query}")
    page.wait_for_selector("#loading", state="detached", timeout=180_000)
    page.wait_for_function(SETTLED, arg=FIGURES - 1, timeout=120_000, polling=100)


def values(page, plot):
    return np.array(json.loads(read(page, plot)), dtype=float)


def test_the_app_renders_and_its_controls_work(page, voila_url):
    open_uncertainty(page, voila_url)
    assert_no_errors(page)
    band = values(page, Plot(BAND, 1, "y")) - values(page, Plot(BAND, 2, "y"))
    assert len(band) > 100 and np.all(band > 0)               # the GGN's band, drawn
    set_and_wait(page, "prior δ", "1e+2", Plot(BAND, 1, "y"))   # a stronger prior: narrower
    narrower = values(page, Plot(BAND, 1, "y")) - values(page, Plot(BAND, 2, "y"))
    assert np.all(narrower < band)
    set_and_wait(page, "problem", "moons", Plot(MAPS, 0, "z"))     # from the empty map
    conf = np.array(json.loads(read(page, Plot(MAPS, 0, "z"))), dtype=float)
    assert conf.shape == (31, 31) and 0.5 <= conf.min() and conf.max() <= 1
    set_control(page, "leave-one-out", CLICK)
    page.wait_for_selector("text=removed points", timeout=120_000)
    assert page.locator("text=rank corr.").count() >= 1
    assert_no_errors(page)
    shot(page, APP)


def test_an_indefinite_posterior_is_a_message_and_the_app_keeps_working(page, voila_url):
    open_uncertainty(page, voila_url, "?kinds=hessian,kflr&prior=0.001")
    expect_message(page, "not positive definite")
    set_and_wait(page, "prior δ", "1e+3", Plot(BAND, 1, "y"))
    page.wait_for_function("() => !document.body.innerText.includes('⚠')", timeout=60_000)
    assert_no_errors(page)


def test_a_try_this_link_opens_its_view(page, voila_url):
    open_uncertainty(page, voila_url)
    page.locator("a.curvlab-lesson").nth(1).click()              # moons, δ = 0.1
    page.wait_for_url("**/uncertainty.ipynb?problem=moons*", timeout=60_000)
    page.wait_for_selector("#loading", state="detached", timeout=180_000)
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(e => e.layout"
        " && (e.layout.annotations || []).some(a => (a.text || '').startsWith('diagonal ·')))",
        timeout=120_000)
    assert_no_errors(page)
