"""The lessons in a real browser: for every app, one "try this" item's link opens the app on the
view it talks about, with no error; and a lesson's link clicked in the page's list does the
same."""

import json

import pytest

from curvlab.dashboards import APPS

from .drive import Plot, assert_no_errors, menu, open_app, read, readout, x_max


def filled(page, plot, n=None):
    data = read(page, plot)
    values = json.loads(data) if data else []
    return len(values) > 0 if n is None else len(values) == n


def landscape(page):
    assert menu(page, "d1") == "gradient" and abs(x_max(page, "1-D slice") - 3) < 1e-9
    assert "closest along d1" in page.inner_text("body")


def spectra(page):
    assert page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                         ".some(e => (e.layout.title.text || '').startsWith("
                         "'SLQ spectral density (whole matrix)') && e.offsetParent !== null)")
    assert filled(page, Plot("SLQ", 0, "y")) and filled(page, Plot("SLQ", 1, "y"))


def damping(page):
    assert filled(page, Plot("Levenberg", 0, "y"), n=15)


def trajectories(page):
    assert menu(page, "function") == "quadratic" and filled(page, Plot("paths", 1, "x"))


def products(page):
    assert filled(page, Plot("against CG steps", 0, "y"), n=7)


def beyond(page):
    assert filled(page, Plot("one R{backprop} sweep", 0, "y"), n=1)


# (app, which lesson, what the view must show)
ONE_PER_APP = [("landscape", 0, landscape), ("spectra", 3, spectra), ("damping", 4, damping),
               ("trajectories", 0, trajectories), ("products", 2, products),
               ("beyond", 0, beyond)]


def test_every_app_has_a_lesson_here():
    assert {a for a, _, _ in ONE_PER_APP} <= set(APPS)      # (newer apps: in their own tests)


@pytest.mark.parametrize("app, i, shows", ONE_PER_APP, ids=[a for a, _, _ in ONE_PER_APP])
def test_a_lessons_link_opens_its_view(page, voila_url, app, i, shows):
    open_app(page, voila_url, app, APPS[app].TRY_THIS[i].href)
    page.wait_for_timeout(300)
    shows(page)
    assert_no_errors(page)


def test_a_lesson_clicked_in_the_page_opens_its_view(page, voila_url):
    open_app(page, voila_url, "damping")
    page.locator("summary", has_text="Try this").first.scroll_into_view_if_needed()
    link = page.locator("a.curvlab-lesson").nth(1)                    # η = 100
    assert link.get_attribute("href") == "?" + APPS["damping"].TRY_THIS[1].query
    link.click()
    page.wait_for_url("**/damping.ipynb?damping=100", timeout=60_000)
    from .drive import wait_rendered
    wait_rendered(page, "damping")
    assert abs(float(readout(page, "damping η")) - 100) < 1e-6
    assert_no_errors(page)
