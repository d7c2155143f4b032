"""What a visitor's first plot waits for (issue 24; timings in bench/first_render.py, not here):
plotly's widget code is requested once per page, before the page even connects to its kernel
(curvlab's template starts it; the figures' modules reuse it), and it carries a partial
plotly.js (curvlab_jupyter.plotly_widget.split: scatter, contour, heatmap); the landscape app's
3-D surface gets the whole plotly.js when first shown, once, and draws with it."""

from curvlab_jupyter.plotly_widget import PARTIAL_TYPES

from .drive import assert_no_errors, block_outside, open_app

# Before the page's scripts: when the page creates its kernel websocket (the widget models all
# come through it), and how often plotly's widget definition is published (the global slot the
# bundle resolves once per evaluation; a pre-set slot counts).
MARKS = """
window.__curvlabWs = null; window.__curvlabPublished = 0;
{ let r; const p = new Promise((x) => { r = x; });
  globalThis.__curvlabPlotlyWidget = { p, r: (f) => { window.__curvlabPublished += 1; r(f); } }; }
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...a) {
    super(...a);
    if (/\\/channels/.test(String(a[0])) && window.__curvlabWs === null)
      window.__curvlabWs = performance.now();
  }
};
"""
GRAPHS = "Array.from(document.querySelectorAll('.js-plotly-plot'))"
TYPES = "(P) => Object.keys(P.PlotSchema.get().traces).sort()"


def test_plotly_comes_once_before_the_kernel_connection_and_whole_only_for_the_3d_view(
        browser, voila_url):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    asked, outside, errors = [], [], []
    block_outside(page, outside)
    page.on("request", lambda r: asked.append(r.url.split("/")[-1])
            if "/curvlab/plotly-" in r.url else None)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(MARKS)
    try:
        open_app(page, voila_url, "landscape")
        assert_no_errors(page)
        assert asked == ["plotly-widget.js"], asked
        started = page.evaluate("() => performance.getEntriesByType('resource')"
                                ".filter(r => r.name.endsWith('/curvlab/plotly-widget.js'))"
                                ".map(r => r.startTime)")
        ws = page.evaluate("window.__curvlabWs")
        assert len(started) == 1 and ws is not None and started[0] < ws, (started, ws)
        assert page.evaluate("window.__curvlabPublished") == 1      # evaluated once
        # the page's plotly.js has the partial bundle's traces and no other; both plots drew with it
        assert page.evaluate(f"({TYPES})(window.Plotly)") == sorted(PARTIAL_TYPES)
        drawn = page.evaluate(f"() => {GRAPHS}.map(e => [e._fullData[0].type,"
                              " !!e.__curvlabPlotly])")
        assert sorted(drawn) == [["contour", False], ["scatter", False]], drawn

        page.get_by_role("button", name="surface", exact=True).click()
        page.wait_for_function(f"() => {GRAPHS}.some(e => e._fullData &&"
                               " e._fullData[0].type === 'surface' &&"
                               " e.querySelector('.gl-container canvas'))")
        assert asked == ["plotly-widget.js", "plotly-full.js"], asked
        whole = page.evaluate(f"({TYPES})({GRAPHS}.find(e => e.__curvlabPlotly).__curvlabPlotly)")
        assert {"surface", "scatter3d", "scattergl"} <= set(whole) and len(whole) > 30
        assert page.evaluate(f"({TYPES})(window.Plotly)") == sorted(PARTIAL_TYPES)

        page.get_by_role("button", name="contour", exact=True).click()     # and back, and again
        page.wait_for_function(f"() => {GRAPHS}.some(e => e._fullData &&"
                               " e._fullData[0].type === 'contour')")
        page.get_by_role("button", name="surface", exact=True).click()
        page.wait_for_function(f"() => {GRAPHS}.some(e => e._fullData &&"
                               " e._fullData[0].type === 'surface')")
        page.wait_for_timeout(300)
        assert asked == ["plotly-widget.js", "plotly-full.js"], asked       # fetched once
        assert_no_errors(page)
        assert outside == [] and errors == [], (outside, errors)
    finally:
        ctx.close()
