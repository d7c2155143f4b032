"""Every app in a real browser: it renders its plots, a control moved with the mouse or the
keyboard changes the plotted data, no error output appears, and a screenshot is saved."""

import json

import numpy as np

from .conftest import SHOTS

ERROR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


# The plotly widget fires 'plotlywidget-after-render' when a view has finished its first draw.
# An update that reaches a view before that is lost, and the view then stays deaf to later
# updates (seen with plotly 7.1 in Voila, about one run in three when a control moved within a
# second of the plots appearing), so the tests interact only once every figure has rendered.
RENDER_COUNTER = ("window.__curvlabRenders = 0; document.addEventListener('plotlywidget-after-render',"
                  " () => { window.__curvlabRenders += 1; window.__curvlabLast = performance.now(); });")
SETTLED = """(n) => window.__curvlabRenders >= n && performance.now() - window.__curvlabLast > 300"""


def open_app(page, url, name, plots):
    """Open an app and wait until its `plots` FigureWidgets (hidden ones too) have rendered."""
    page.add_init_script(RENDER_COUNTER)
    page.goto(f"{url}/voila/render/{name}.ipynb")
    page.wait_for_selector("#loading", state="detached", timeout=180_000)
    page.wait_for_function(SETTLED, arg=plots, timeout=120_000, polling=100)


# JS: the plot whose title contains `p`, and a JSON snapshot of one trace property.
FIND = ("const el = Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".find(e => e.layout && e.layout.title && (e.layout.title.text || '').includes(p));"
        "const d = el && el.data[t] ? el.data[t][k] : undefined;"
        "const snap = (d === undefined || d === null) ? null :"
        " JSON.stringify(Array.from(d, r => r && r.length !== undefined ? Array.from(r) : r));")


def plot_data(page, plot, trace, key):
    """Trace `trace`'s property `key` of the plot titled `plot`, as JSON."""
    return page.evaluate(f"([p, t, k]) => {{ {FIND} return snap; }}", [plot, trace, key])


def wait_changed(page, plot, trace, key, before):
    page.wait_for_function(f"([p, t, k, b]) => {{ {FIND} return snap !== null && snap !== b; }}",
                           arg=[plot, trace, key, before], timeout=60_000)


def wait_nonempty(page, plot, trace, key):
    page.wait_for_function(f"([p, t, k]) => {{ {FIND} return snap !== null && snap !== '[]'; }}",
                           arg=[plot, trace, key], timeout=120_000)


def assert_no_errors(page):
    assert page.locator(ERROR_OUTPUT).count() == 0, page.locator(ERROR_OUTPUT).first.inner_text()
    body = page.inner_text("body")
    assert "Traceback" not in body
    assert "⚠" not in body, body[body.index("⚠") - 200: body.index("⚠") + 300]


def set_readout(page, label, value):
    """Type into a slider's readout and press Enter (ipywidgets 8)."""
    slider = page.locator(".widget-slider", has=page.locator(f"label:text-is('{label}')")).first
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def choose(page, label, option):
    box = page.locator(".widget-dropdown", has=page.locator(f"label:text-is('{label}')")).first
    box.locator("select").select_option(label=option)


def drag_slider(page, label, dx):
    slider = page.locator(".widget-slider", has=page.locator(f"label:text-is('{label}')")).first
    handle = slider.locator(".noUi-handle")
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_landscape_app(page, voila_url):
    open_app(page, voila_url, "landscape", 2)
    assert_no_errors(page)
    before = plot_data(page, "1-D slice", 0, "x")
    drag_slider(page, "span", 60)                      # with the mouse
    wait_changed(page, "1-D slice", 0, "x", before)
    before_z = plot_data(page, "2-D slice", 0, "z")
    choose(page, "d2", "gradient")                     # a new 2-D plane
    wait_changed(page, "2-D slice", 0, "z", before_z)
    assert_no_errors(page)
    shot(page, "landscape")


def test_landscape_app_shows_bad_combinations_as_messages(page, voila_url):
    open_app(page, voila_url, "landscape", 2)
    choose(page, "data", "regression1d")               # with cross-entropy: impossible
    page.wait_for_selector("text=pick the mse loss", timeout=60_000)
    assert page.locator(ERROR_OUTPUT).count() == 0 and "Traceback" not in page.inner_text("body")
    before = plot_data(page, "1-D slice", 0, "y")
    choose(page, "loss", "mse")                        # and the app keeps working
    wait_changed(page, "1-D slice", 0, "y", before)
    assert_no_errors(page)


def test_spectra_app(page, voila_url):
    open_app(page, voila_url, "spectra", 3)
    assert_no_errors(page)
    before = plot_data(page, "eigenvalues", 0, "y")
    choose(page, "scope", "W1")
    wait_changed(page, "eigenvalues", 0, "y", before)
    before_h = plot_data(page, "heatmaps", 1, "z")
    choose(page, "approx.", "diagonal")
    wait_changed(page, "heatmaps", 1, "z", before_h)
    # the heatmaps arrive as binary float32 rows: square, symmetric (a curvature block), not blank,
    # and the diagonal approximation zero off its diagonal
    exact = json.loads(plot_data(page, "heatmaps", 0, "z"))
    diag = json.loads(plot_data(page, "heatmaps", 1, "z"))
    Z, D = np.array(exact), np.array(diag)
    assert Z.shape[0] == Z.shape[1] > 10 and np.abs(Z).max() > 0
    assert np.allclose(Z, Z.T, rtol=1e-6, atol=1e-7 * np.abs(Z).max())
    assert np.all(D[~np.eye(len(D), dtype=bool)] == 0) and np.abs(np.diag(D)).max() > 0
    assert page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot')).find(e => "
                         "(e.layout.title.text || '').includes('heatmaps')).data[0].z[0] instanceof Float32Array")
    assert_no_errors(page)
    shot(page, "spectra")


def test_damping_app(page, voila_url):
    open_app(page, voila_url, "damping", 5)
    assert_no_errors(page)
    before = plot_data(page, "filter factor", 0, "y")
    set_readout(page, "damping η", "1.0e+1")
    wait_changed(page, "filter factor", 0, "y", before)
    page.get_by_role("button", name="run Levenberg–Marquardt").click()
    wait_nonempty(page, "Levenberg", 0, "y")
    assert_no_errors(page)
    shot(page, "damping")


def test_trajectories_app(page, voila_url):
    open_app(page, voila_url, "trajectories", 3)
    assert_no_errors(page)
    before = plot_data(page, "paths", 1, "x")          # gradient descent's path
    page.locator(".widget-checkbox").get_by_text("reparameterise").click()
    wait_changed(page, "paths", 1, "x", before)
    marks = ("() => JSON.stringify(Array.from(document.querySelectorAll('.js-plotly-plot'))"
             ".find(e => (e.layout.title.text || '').includes('paths')).layout.shapes.map(s => [s.xanchor, s.yanchor]))")
    before_k = page.evaluate(marks)                     # the 'step k' marks (layout shapes)
    set_readout(page, "show step", 5)
    page.wait_for_function(f"(b) => ({marks})() !== b", arg=before_k, timeout=60_000)
    paths = page.locator(".js-plotly-plot", has=page.locator(".gtitle", has_text="paths"))
    assert paths.locator(".shapelayer path").count() == 5          # one mark per method
    assert_no_errors(page)
    shot(page, "trajectories")


def test_products_app(page, voila_url):
    open_app(page, voila_url, "products", 3)
    assert_no_errors(page)
    before = plot_data(page, "against the step r", 2, "x")
    set_readout(page, "step r", "1e-2")
    wait_changed(page, "against the step r", 2, "x", before)
    page.get_by_role("button", name="measure Lin's two products").click()
    wait_nonempty(page, "against CG steps", 0, "y")
    assert_no_errors(page)
    shot(page, "products")


def test_beyond_app(page, voila_url):
    open_app(page, voila_url, "beyond", 2)
    assert_no_errors(page)
    before = plot_data(page, "relaxation", 0, "y")
    page.get_by_role("button", name="Boltzmann machine").click()
    wait_changed(page, "central differences", 0, "y", before)
    before_err = plot_data(page, "against samples", 2, "y")
    set_readout(page, "σ", "1e-2")
    wait_changed(page, "against samples", 2, "y", before_err)
    assert_no_errors(page)
    shot(page, "beyond")


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
