"""The dynamics app in a real browser: it renders its five panels with no error; the step slider
and ▶ move the loss slice; the optimiser menu and the run button train again; a diverging η is a
message and the app keeps working; a deep link opens its view."""

import json

from . import drive
from .drive import (
    CLICK,
    Plot,
    assert_no_errors,
    expect_message,
    open_app,
    read,
    readout,
    set_and_wait,
    set_control,
    shot,
)

drive.PLOTS.setdefault("dynamics", 5)        # its five figures (until drive.PLOTS lists it)

SLICE = Plot("loss slice", 0, "z")
THRESHOLD = Plot("threshold", 1, "y")        # the sharpness panel's dashed line


def threshold(page):
    return json.loads(read(page, THRESHOLD))[0]


def test_it_renders_with_no_error(app_page):
    page = app_page("dynamics")
    assert_no_errors(page)
    assert threshold(page) == 2.0
    assert page.locator("text=loss slice through the weights at step 0").count()
    shot(page, "dynamics")


def test_the_step_slider_moves_the_slice(app_page):
    page = app_page("dynamics")
    set_and_wait(page, "step", 150, SLICE)
    page.wait_for_selector("text=loss slice through the weights at step 150")
    assert_no_errors(page)


def test_play_replays_to_the_last_step(app_page):
    page = app_page("dynamics")
    set_and_wait(page, "step", 250, SLICE)
    page.locator(".widget-play button").first.click()
    page.wait_for_selector("text=loss slice through the weights at step 300", timeout=60_000)
    assert readout(page, "step") == "300"
    assert_no_errors(page)


def test_the_run_button_trains_the_chosen_optimiser(app_page):
    page = app_page("dynamics")
    set_control(page, "optimiser", "momentum")
    expect_message(page, "press “run”")
    set_and_wait(page, "run", CLICK, THRESHOLD)
    assert abs(threshold(page) - 3.8) < 1e-9
    assert_no_errors(page)


def test_a_diverging_eta_is_a_message_and_the_app_keeps_working(app_page):
    page = app_page("dynamics")
    set_control(page, "optimiser", "gd")
    set_control(page, "η", 10)
    set_and_wait(page, "run", CLICK, THRESHOLD)
    expect_message(page, "diverged at step")
    set_control(page, "η", 0.5)
    set_and_wait(page, "run", CLICK, THRESHOLD)
    assert threshold(page) == 4.0
    assert_no_errors(page)


def test_a_deep_link_opens_its_view(page, voila_url):
    open_app(page, voila_url, "dynamics", "?optimiser=momentum&run=train&step=100")
    page.wait_for_selector("text=loss slice through the weights at step 100")
    assert abs(threshold(page) - 3.8) < 1e-9
    assert readout(page, "step") == "100"
    assert_no_errors(page)
