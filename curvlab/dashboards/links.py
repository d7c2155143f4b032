"""Shareable links: a dashboard's view as a URL query string, and back.

Every control that defines the view is named by its label (`data`, `hidden`, `damping`, `span`,
…: the label's words before any ':' or '(', lower-case ASCII, joined by '-'), so
`landscape.ipynb?data=moons&hidden=8-8&span=2.5` opens the landscape app on that view. Multiple
selections are comma-separated labels. Unknown names and invalid values give one message in the
app's status line and leave those controls at their defaults — never a broken page.

Under Voila with preheated kernels the app has been built before anyone asked for it, so the
apps call `query_string()` in a second cell: it waits for the visitor's request (Voila's
`get_query_string`) and the view is applied then; without preheating, or in Jupyter, it returns
at once.
"""

import html
import re
import urllib.parse

import ipywidgets as W

from .widgets import slug

# True while a preheated kernel waits for its visitor's request (a load test asks for this).
waiting = False


def query_string():
    """The page's query string under Voila ('' in Jupyter); with a preheated kernel, waits for
    the visitor's request first."""
    global waiting
    try:
        from voila.utils import get_query_string
    except ImportError:
        return ""
    waiting = True
    try:
        return get_query_string() or ""
    finally:
        waiting = False


def key(description):
    """A control's name in links: 'damping η' -> 'damping', 'step r' -> 'step-r'."""
    head = re.split(r"[:(]", description)[0]
    # a Greek letter alone goes by its name ('σ' -> 'sigma')
    return slug(head) or slug("".join(GREEK.get(c, c) for c in head.lower()))


GREEK = {"σ": "sigma", "η": "eta", "λ": "lambda", "ν": "nu", "ρ": "rho", "ε": "epsilon",
         "α": "alpha"}


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


# widgets with a value that is not part of the view
NOT_VIEW = (W.FileUpload, W.HTML, W.IntProgress, W.Button)


def view_controls(dashboard):
    """{name: widget} for every control of the dashboard that defines its view, in page order."""
    out = {}
    for w in _walk(dashboard.widget):
        if isinstance(w, W.ValueWidget) and not isinstance(w, NOT_VIEW) \
                and getattr(w, "description", "") and key(w.description):
            out.setdefault(key(w.description), w)
    return out


def _text(w):
    """A control's current value as link text."""
    if isinstance(w, W.SelectMultiple):
        return ",".join(w.label)
    if isinstance(w, (W.Dropdown, W.ToggleButtons, W.SelectionSlider, W.RadioButtons)):
        return str(w.label)
    if isinstance(w, (W.Checkbox, W.ToggleButton)):
        return "1" if w.value else "0"
    if isinstance(w, (W.FloatLogSlider, W.FloatSlider, W.FloatText, W.BoundedFloatText)):
        return f"{w.value:.6g}"
    return str(w.value)


def _value(w, text):
    """The value control `w` takes for link text `text`, or ValueError saying what it accepts."""
    if isinstance(w, W.SelectMultiple):
        labels = list(w._options_labels)
        chosen = [t for t in text.split(",") if t]
        bad = [t for t in chosen if t not in labels]
        if bad:
            raise ValueError(f"{bad} not among {labels}")
        return ("index", tuple(labels.index(t) for t in chosen))
    if isinstance(w, (W.Dropdown, W.ToggleButtons, W.SelectionSlider, W.RadioButtons)):
        labels = [str(label) for label in w._options_labels]
        if text not in labels:
            raise ValueError(f"not one of {labels}")
        return ("index", labels.index(text))
    if isinstance(w, (W.Checkbox, W.ToggleButton)):
        if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError("not 1/0 or true/false")
        return ("value", text.lower() in ("1", "true", "yes", "on"))
    number = float if isinstance(w.value, float) else int
    try:
        v = number(text)
    except ValueError:
        raise ValueError(f"not {'a number' if number is float else 'a whole number'}") from None
    lo, hi = getattr(w, "min", None), getattr(w, "max", None)
    if isinstance(w, W.FloatLogSlider):
        lo, hi = w.base ** w.min, w.base ** w.max
    if lo is not None and not lo <= v <= hi:
        raise ValueError(f"outside [{lo:g}, {hi:g}]")
    return ("value", v)


def apply_query(dashboard, qs):
    """Set the controls named in query string `qs` (picker controls first, then the rest in page
    order); a list of the problems, also shown in the status line."""
    controls = view_controls(dashboard)
    parsed = urllib.parse.parse_qs((qs or "").lstrip("?"), keep_blank_values=True)
    asked = {k: v[-1] for k, v in parsed.items()}
    problems = [f"unknown control {k!r}" for k in asked if k not in controls]
    picker = set(getattr(dashboard.picker, "controls", []))
    order = sorted((k for k in asked if k in controls), key=lambda k: controls[k] not in picker)
    for k in order:
        w = controls[k]
        try:
            attr, v = _value(w, asked[k])
        except ValueError as exc:
            problems.append(f"{k}={asked[k]!r} is {exc}")
            continue
        if getattr(w, attr) != v:
            setattr(w, attr, v)
    if order:
        # the figures changed before any page showed them: put their current data into the synced
        # widget state, which the page will load (later changes travel as messages that a view
        # created afterwards never receives; see Dashboard.sync_figures)
        dashboard.sync_figures()
    if problems:
        dashboard.status.fail(ValueError(
            "link: " + "; ".join(problems) + " — kept the defaults for those (this app's "
            f"controls: {', '.join(controls)})"))
    return problems


def link(dashboard, defaults=None):
    """The query string of the dashboard's current view (only controls that differ from
    `defaults`, a {name: text} of the initial view, when given)."""
    now = {k: _text(w) for k, w in view_controls(dashboard).items()}
    if defaults is not None:
        now = {k: v for k, v in now.items() if defaults.get(k) != v}
    return "?" + urllib.parse.urlencode(now, safe=",")


def link_box(dashboard):
    """A 'link to this view' button and the link it writes (relative to the page, so it works
    on any server); remembers the initial view so links carry only what was changed."""
    defaults = {k: _text(w) for k, w in view_controls(dashboard).items()}
    button = W.Button(description="link to this view", icon="", layout=W.Layout(width="160px"))
    out = W.HTML()

    def write(_=None):
        q = link(dashboard, defaults)
        shown = html.escape(q) if q != "?" else "(the default view)"
        out.value = (f"<a href=\"{html.escape(q)}\" target=\"_blank\" rel=\"noopener\">{shown}</a>"
                     " &nbsp;<span style='color:#555'>(copy it, or open it in a new tab)</span>")
    button.on_click(write)
    return W.HBox([button, out])
