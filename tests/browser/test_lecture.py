"""The apps in a lecture hall, in a real browser: presentation mode enlarges the controls and
keeps every plot area at least as large; the link box shows the page's full URL and copies it;
the play button replays Levenberg–Marquardt step by step."""

from .drive import CLICK, Plot, assert_no_errors, open_app, readout, set_and_wait

AREAS = ("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
         ".filter(e => e.offsetParent !== null && e._fullLayout)"
         ".map(e => [e._fullLayout._size.w, e._fullLayout._size.h])")


def test_presentation_mode_enlarges_controls_and_keeps_plot_areas(page, voila_url):
    open_app(page, voila_url, "damping")
    before = page.evaluate(AREAS)
    label = page.locator(".widget-label", has_text="matrix").first
    height = label.bounding_box()["height"]
    page.get_by_role("button", name="presentation").click()
    page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                           ".every(e => e._fullLayout.font.size === 24)", timeout=30_000)
    # the panels re-flow to one figure a row, and the plots follow: each plot area (inside the
    # axes) as large as before or larger, as tall or taller, and all of them twice as large
    area = "(s) => s.reduce((t, [w, h]) => t + w * h, 0)"
    grown = (f"(b) => {{ const a = ({AREAS})(); return a.length === b.length && a.every("
             "([w, h], i) => w * h >= b[i][0] * b[i][1] && h >= b[i][1])"
             f" && ({area})(a) > 2 * ({area})(b); }}")
    page.wait_for_function(grown, arg=before, timeout=20_000, polling=250)
    after = page.evaluate(AREAS)
    assert len(after) == len(before) == 5
    assert sum(w * h for w, h in after) > 2 * sum(w * h for w, h in before)
    assert label.bounding_box()["height"] > 1.25 * height             # the controls too
    # and back: two to a row again, each plot area as before (within a few pixels)
    page.get_by_role("button", name="presentation").click()
    back = (f"(b) => {{ const a = ({AREAS})(); return a.length === b.length && a.every("
            "([w, h], i) => Math.abs(w - b[i][0]) <= 0.03 * b[i][0] + 2"
            " && Math.abs(h - b[i][1]) <= 0.03 * b[i][1] + 2); }")
    page.wait_for_function(back, arg=before, timeout=20_000, polling=250)
    assert_no_errors(page)


def test_the_link_box_shows_the_full_url_and_copies_it(page, voila_url):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_app(page, voila_url, "landscape")
    set_and_wait(page, "span", "2.5", Plot("1-D slice", 0, "x"))
    page.get_by_role("button", name="link to this view").click()
    box = page.locator("input.curvlab-url")
    page.wait_for_function("() => (document.querySelector('input.curvlab-url') || {}).value"
                           "?.includes('span=2.5')", timeout=30_000)
    url = box.input_value()
    assert url == f"{voila_url}/voila/render/landscape.ipynb?span=2.5"
    page.locator("button.curvlab-copy").click()
    page.wait_for_function("() => document.querySelector('button.curvlab-copy')"
                           ".textContent === 'copied'", timeout=10_000)
    assert page.evaluate("() => navigator.clipboard.readText()") == url


def test_the_play_button_replays_levenberg_marquardt(page, voila_url):
    open_app(page, voila_url, "damping")
    set_and_wait(page, "run Levenberg–Marquardt", CLICK, Plot("Levenberg", filled=True))
    assert readout(page, "replay k") == "0"
    page.locator(".widget-play button").first.click()
    page.wait_for_function("() => Array.from(document.querySelectorAll('.widget-slider'))"
                           ".some(s => s.textContent.includes('replay k') &&"
                           " s.querySelector('.widget-readout').textContent.trim() === '15')",
                           timeout=60_000)
    page.wait_for_selector("text=LM step 15", timeout=30_000)
    assert_no_errors(page)
