"""Saving for slides, in a real browser: a figure's PNG from plotly's mode bar (rendered in the
page, at slide width, its title with the settings) and the app's numbers as CSV in one click,
both through the page's own downloads."""

import csv
import io
import struct

from .drive import open_app


def test_a_figure_saves_as_a_slide_sized_png(page, voila_url):
    open_app(page, voila_url, "landscape")
    plot = page.locator(".js-plotly-plot").first
    plot.hover()
    with page.expect_download(timeout=60_000) as download:
        plot.locator(".modebar-btn[data-title*='png' i]").click()
    data = open(download.value.path(), "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])             # the IHDR chunk
    assert width >= 1600 and height > 800, (width, height)
    assert download.value.suggested_filename.startswith("curvlab-")
    # its title's second line holds the settings that made it
    assert page.evaluate("() => document.querySelector('.js-plotly-plot').layout.title.subtitle"
                         ".text") == "spirals · 8 · tanh · cross_entropy · part-trained"


def test_the_numbers_download_as_csv(page, voila_url):
    open_app(page, voila_url, "damping")
    with page.expect_download(timeout=60_000) as download:              # one click
        page.get_by_role("button", name="numbers as CSV").click()
    assert download.value.suggested_filename == "curvlab-damping.csv"
    rows = list(csv.reader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert rows[0] == ["panel", "trace", "i", "x", "y", "z"] and len(rows) > 100
    panels = {r[0] for r in rows[1:]}
    assert any(p.startswith("filter factor") for p in panels)
    assert any(p.startswith("angle") for p in panels)
    assert all(float(r[4]) == float(r[4]) for r in rows[1:50])   # numbers, not NaN text


def test_the_presentation_toggle_enlarges_the_figures_text(page, voila_url):
    open_app(page, voila_url, "spectra")
    size = ("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".map(e => e._fullLayout.font.size)")
    assert set(page.evaluate(size)) == {12}
    page.get_by_role("button", name="presentation").click()
    page.wait_for_function(f"() => ({size})().every(s => s === 24)", timeout=30_000)
    tick = page.locator(".js-plotly-plot .xtick text").first
    assert float(tick.evaluate("t => parseFloat(getComputedStyle(t).fontSize)")) >= 20
