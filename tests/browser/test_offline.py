"""Offline: with every request that leaves loopback blocked, each app still renders its plots and
the console shows no error (no icon font, script or formula renderer is fetched from outside)."""

import pytest

from .drive import PLOTS, assert_no_errors, block_outside, open_app


# Every app, the dynamics and uncertainty apps too: they once failed here with "Cell execution
# timed out" — not their build (about a second each, bench/results_dynamics.md) but the test
# server's cell timeout, which counted a preheated kernel's wait for its visitor (conftest.py).
@pytest.mark.parametrize("app", ["index", *PLOTS])
def test_every_page_works_with_no_network_beyond_loopback(browser, voila_url, app):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = ctx.new_page()
    # as conftest.new_page: the first page comes while every app's kernel is being preheated
    # (Playwright's 30 s default was not enough on a loaded 2-core machine)
    page.set_default_timeout(120_000)
    outside, errors = [], []

    block_outside(page, outside)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        if app == "index":
            page.goto(f"{voila_url}/voila/render/index.ipynb")
            page.wait_for_selector("a[href*='landscape.ipynb']", timeout=60_000)
        else:
            open_app(page, voila_url, app)
            assert_no_errors(page)
        page.wait_for_timeout(500)
        assert outside == [], outside
        assert errors == [], errors
    finally:
        ctx.close()
