"""Offline: with every request that leaves loopback blocked, each app still renders its plots and
the console shows no error (no icon font, script or formula renderer is fetched from outside)."""

import pytest

from .test_apps import RENDER_COUNTER, SETTLED, assert_no_errors

PLOTS = {"landscape": 2, "spectra": 3, "damping": 5, "trajectories": 3, "products": 3, "beyond": 2}


@pytest.mark.parametrize("app", ["index", *PLOTS])
def test_every_page_works_with_no_network_beyond_loopback(browser, voila_url, app):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = ctx.new_page()
    outside, errors = [], []

    def route(r):
        host = r.request.url.split("/")[2] if "://" in r.request.url else ""
        if host.split(":")[0] in ("127.0.0.1", "localhost", ""):
            return r.continue_()
        outside.append(r.request.url)
        return r.abort()
    page.route("**/*", route)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.add_init_script(RENDER_COUNTER)
        page.goto(f"{voila_url}/voila/render/{app}.ipynb")
        if app == "index":
            page.wait_for_selector("a[href*='landscape.ipynb']", timeout=60_000)
        else:
            page.wait_for_selector("#loading", state="detached", timeout=180_000)
            page.wait_for_function(SETTLED, arg=PLOTS[app], timeout=120_000, polling=100)
            assert_no_errors(page)
        page.wait_for_timeout(500)
        assert outside == [], outside
        assert errors == [], errors
    finally:
        ctx.close()
