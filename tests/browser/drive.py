"""Driving an app's page, each step written once: open an app and wait until its figures have
drawn, find a control by its label and set it, wait until a plot shows something else, and read
a plot, a slider's readout or a menu's choice."""

import contextlib
import json
import pathlib
from dataclasses import dataclass

SHOTS = pathlib.Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
ERROR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'

# How many FigureWidgets each app shows (hidden ones too): its page is ready once all have drawn.
PLOTS = {"landscape": 2, "spectra": 3, "damping": 5, "trajectories": 3, "products": 3, "beyond": 2,
         "dynamics": 5, "uncertainty": 3}

# The plotly widget fires 'plotlywidget-after-render' when a view has finished its first draw.
# An update that reaches a view before that is lost, and the view then stays deaf to later
# updates (seen with plotly 7.1 in Voila, about one run in three when a control moved within a
# second of the plots appearing), so the tests interact only once every figure has rendered.
RENDER_COUNTER = ("window.__curvlabRenders = 0;"
                  " document.addEventListener('plotlywidget-after-render', () => {"
                  " window.__curvlabRenders += 1; window.__curvlabLast = performance.now(); });")
SETTLED = "(n) => window.__curvlabRenders >= n && performance.now() - window.__curvlabLast > 300"


def open_app(page, url, app, query=""):
    """Open `app` (with a link's `query`, '?…'); wait until every one of its figures has drawn."""
    page.add_init_script(RENDER_COUNTER)
    page.goto(f"{url}/voila/render/{app}.ipynb{query}")
    wait_rendered(page, app)


def wait_rendered(page, app):
    """Wait for the kernel to have run the app's notebook and for all its figures to have drawn."""
    page.wait_for_selector("#loading", state="detached", timeout=180_000)
    page.wait_for_function(SETTLED, arg=PLOTS[app], timeout=120_000, polling=100)


def assert_no_errors(page):
    assert page.locator(ERROR_OUTPUT).count() == 0, page.locator(ERROR_OUTPUT).first.inner_text()
    body = page.inner_text("body")
    assert "Traceback" not in body
    assert "⚠" not in body, body[body.index("⚠") - 200: body.index("⚠") + 300]


def expect_message(page, text):
    """Wait for the app's message `text`: shown as a message, not as error output or a traceback."""
    page.wait_for_selector(f"text={text}", timeout=60_000)
    assert page.locator(ERROR_OUTPUT).count() == 0 and "Traceback" not in page.inner_text("body")


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


# ---- controls -----------------------------------------------------------------------------------

CLICK = "click"          # the value of a button or checkbox: press it


@dataclass(frozen=True)
class Drag:
    """A slider's value set with the mouse: its handle dragged `dx` pixels."""
    dx: float

    def __str__(self):
        return f"drag{self.dx:+g}px"


def control(page, label):
    """(kind, element) of the control labelled `label`: a slider or menu by its whole description,
    else a checkbox by its text or a button by its name (either containing `label`)."""
    for kind, found in (("slider", _labelled(page, ".widget-slider", label)),
                        ("menu", _labelled(page, ".widget-dropdown", label)),
                        ("checkbox", page.locator(".widget-checkbox").get_by_text(label)),
                        ("button", page.get_by_role("button", name=label))):
        if found.count():
            return kind, found.first
    raise AssertionError(f"no control labelled {label!r} on the page")


def set_control(page, label, value):
    """Set the control labelled `label`: a slider by typing `value` into its readout (or by a
    `Drag`), a menu by choosing option `value`, a button or checkbox by a CLICK."""
    kind, el = control(page, label)
    if kind == "slider" and isinstance(value, Drag):
        drag(page, el, value.dx)
    elif kind == "slider":
        type_readout(page, el, value)
    elif kind == "menu":
        el.locator("select").select_option(label=value)
    else:
        assert value == CLICK, f"{label!r} is a {kind}: its value is CLICK, not {value!r}"
        el.click()


def drag(page, slider, dx):
    """Drag the handle of `slider` (a .widget-slider) `dx` pixels with the mouse."""
    box = slider.locator(".noUi-handle").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=5)
    page.mouse.up()


def type_readout(page, slider, value):
    """Type `value` into the readout of `slider` (a .widget-slider) and press Enter."""
    slider.locator(".widget-readout").click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def _labelled(page, cls, label):
    named = page.locator(f"label:text-is({json.dumps(label, ensure_ascii=False)})")
    return page.locator(cls, has=named)


def set_readout(page, label, value):
    """Type `value` into the readout of the slider labelled `label` (no search for its kind: the
    benchmarks time this)."""
    type_readout(page, _labelled(page, ".widget-slider", label).first, value)


def choose(page, label, option):
    """Choose `option` in the menu labelled `label`."""
    _labelled(page, ".widget-dropdown", label).first.locator("select").select_option(label=option)


def readout(page, label):
    """The text of the readout of the slider labelled `label`."""
    return control(page, label)[1].locator(".widget-readout").inner_text()


def menu(page, label):
    """The option chosen in the menu labelled `label`."""
    return control(page, label)[1].locator("select").evaluate(
        "s => s.options[s.selectedIndex].text")


# ---- plots --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plot:
    """A thing a plot shows: on the plot whose title contains `title`, trace `trace`'s `key` ('x',
    'y' or 'z'), or with key 'marks' the anchors of its layout's shapes (moving marks). As what a
    step must change: `filled`, only that it comes to hold data; `retitled`, the plot's title
    once the step has been made (the plot is found by it)."""
    title: str
    trace: int = 0
    key: str = "y"
    filled: bool = False
    retitled: str | None = None

    def __str__(self):
        return f"{self.title!r}[{self.trace}].{self.key}"


# JS: the plot whose title contains `p`, and a JSON snapshot of its trace `t`'s property `k` (or of
# its marks).
FIND = ("const el = Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".find(e => e.layout && e.layout.title && (e.layout.title.text || '').includes(p));"
        "const d = !el ? undefined"
        " : k === 'marks' ? el.layout.shapes.map(s => [s.xanchor, s.yanchor])"
        " : el.data[t] ? el.data[t][k] : undefined;"
        "const snap = (d === undefined || d === null) ? null :"
        " JSON.stringify(Array.from(d, r => r && r.length !== undefined ? Array.from(r) : r));")


def read(page, plot):
    """What `plot` shows, as JSON (None if the plot or its trace is missing)."""
    return page.evaluate(f"([p, t, k]) => {{ {FIND} return snap; }}",
                         [plot.title, plot.trace, plot.key])


def x_max(page, title):
    """The largest x of the first trace of the plot titled `title` (None if it has none)."""
    x = read(page, Plot(title, 0, "x"))
    return max(float(v) for v in x.strip("[]").split(",")) if x and x != "[]" else None


@contextlib.contextmanager
def changes(page, plot):
    """Around a step: read `plot` before it, and after it wait until the plot shows something
    else (or, `filled`, until it shows anything)."""
    before = read(page, plot)
    yield
    if plot.filled:
        done, timeout = "snap !== null && snap !== '[]'", 120_000
    else:
        done, timeout = "snap !== null && snap !== b", 60_000
    page.wait_for_function(f"([p, t, k, b]) => {{ {FIND} return {done}; }}",
                           arg=[plot.retitled or plot.title, plot.trace, plot.key, before],
                           timeout=timeout)


def set_and_wait(page, label, value, plot):
    """Set the control labelled `label` to `value` and wait until `plot` shows something else."""
    with changes(page, plot):
        set_control(page, label, value)


def block_outside(page, outside):
    """Let `page` reach loopback only: every other request is aborted and listed in `outside`."""
    def route(r):
        host = r.request.url.split("/")[2] if "://" in r.request.url else ""
        if host.split(":")[0] in ("127.0.0.1", "localhost", ""):
            return r.continue_()
        outside.append(r.request.url)
        return r.abort()
    page.route("**/*", route)
