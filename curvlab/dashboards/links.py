"""Shareable links: a dashboard's view as a URL query string, and back.

Every control that defines the view is named by its label (`data`, `hidden`, `damping`, `span`,
…: the label's words before any ':' or '(', lower-case ASCII, joined by '-'), so
`landscape.ipynb?data=moons&hidden=8-8&span=2.5` opens the landscape app on that view. Multiple
selections are comma-separated labels; names and labels ignore case. `run=lm` asks for a
dashboard's action (a button's work: its ACTIONS). Unknown names and invalid values give one
message in plain words in the app's status line and leave those controls at their defaults —
never a broken page.

Under Voila with preheated kernels the app has been built before anyone asked for it, so the
apps call `query_string()` in a second cell: it waits for the visitor's request (Voila's
`get_query_string`, as `visit` speaks it) and the view is applied then; without preheating, or
in Jupyter, it returns at once.
"""

import re
import urllib.parse

import ipywidgets as W

from .pagewidgets import LinkBox
from .visit import get_query_string
from .widgets import slug

# True while a preheated kernel waits for its visitor's request (a load test asks for this).
waiting = False


def query_string():
    """The page's query string under Voila ('' in Jupyter); with a preheated kernel, waits for
    the visitor's request first (`visit`: Voila's protocol, without importing Voila)."""
    global waiting
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


def _choose(labels, text):
    """The index of `text` among `labels`: exactly, else ignoring case; None if neither."""
    if text in labels:
        return labels.index(text)
    folded = [label.casefold() for label in labels]
    return folded.index(text.casefold()) if text.casefold() in folded else None


def _value(w, text):
    """The value control `w` takes for link text `text`, or ValueError saying in plain words
    what it accepts."""
    if isinstance(w, W.SelectMultiple):
        labels = [str(label) for label in w._options_labels]
        chosen = [t for t in text.split(",") if t]
        bad = [t for t in chosen if _choose(labels, t) is None]
        if bad:
            raise ValueError(f"has no option {', '.join(map(repr, bad))}; the options are "
                             f"{', '.join(labels)}")
        return ("index", tuple(_choose(labels, t) for t in chosen))
    if isinstance(w, (W.Dropdown, W.ToggleButtons, W.SelectionSlider, W.RadioButtons)):
        labels = [str(label) for label in w._options_labels]
        i = _choose(labels, text)
        if i is None:
            raise ValueError(f"has no option {text!r}; the options are {', '.join(labels)}")
        return ("index", i)
    if isinstance(w, (W.Checkbox, W.ToggleButton)):
        if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"is on or off (1 or 0), not {text!r}")
        return ("value", text.lower() in ("1", "true", "yes", "on"))
    number = float if isinstance(w.value, float) else int
    try:
        v = number(text)
    except ValueError:
        raise ValueError(f"takes {'a number' if number is float else 'a whole number'}, not "
                         f"{text!r}") from None
    lo, hi = getattr(w, "min", None), getattr(w, "max", None)
    if isinstance(w, W.FloatLogSlider):
        lo, hi = w.base ** w.min, w.base ** w.max
    if lo is not None and not lo <= v <= hi:
        raise ValueError(f"goes from {lo:g} to {hi:g}, not {text}")
    return ("value", v)


RUN = "run"      # the query's name for a dashboard's actions (run=lm: a button's work)


def apply_query(dashboard, qs):
    """Set the controls named in query string `qs` (names ignore case; picker controls first,
    then the rest in page order), then run the actions it names (`run=`, the dashboard's
    ACTIONS); a list of the problems, also shown in the status line in plain words."""
    controls = view_controls(dashboard)
    parsed = urllib.parse.parse_qs((qs or "").lstrip("?"), keep_blank_values=True)
    asked = {k.lower(): v[-1] for k, v in parsed.items()}
    actions = [a for a in asked.pop(RUN, "").split(",") if a]
    problems = [f"this app has no control called {k!r}" for k in asked if k not in controls]
    picker = set(getattr(dashboard.picker, "controls", []))
    order = sorted((k for k in asked if k in controls), key=lambda k: controls[k] not in picker)
    for k in order:
        w = controls[k]
        try:
            attr, v = _value(w, asked[k])
        except ValueError as exc:
            problems.append(f"{k} {exc}")
            continue
        if getattr(w, attr) != v:
            setattr(w, attr, v)
    known = getattr(dashboard, "ACTIONS", {})
    for a in actions:
        if a.lower() not in known:
            problems.append(f"this app cannot run {a!r}" + (
                f" (it runs: {', '.join(known)})" if known else ""))
        else:
            getattr(dashboard, known[a.lower()])()
    if order or actions:
        # the figures changed before any page showed them: put their current data into the synced
        # widget state, which the page will load (later changes travel as messages that a view
        # created afterwards never receives; see Dashboard.sync_figures)
        dashboard.sync_figures()
    if problems:
        dashboard.status.warn(
            "This link could not set everything: " + "; ".join(problems) + ". The rest of the "
            f"view is set; those keep their defaults. (This app's controls: "
            f"{', '.join(controls)}.)")
    return problems


def view_texts(dashboard):
    """{name: link text} of every view control now."""
    return {k: _text(w) for k, w in view_controls(dashboard).items()}


def link(dashboard, defaults=None):
    """The query string of the dashboard's current view (only controls that differ from
    `defaults`, a {name: text} of the initial view, when given), with the actions whose results
    the view shows (`current_actions()`, when the dashboard has it)."""
    now = view_texts(dashboard)
    if defaults is not None:
        now = {k: v for k, v in now.items() if defaults.get(k) != v}
    done = getattr(dashboard, "current_actions", lambda: [])()
    if done:
        now[RUN] = ",".join(done)
    return "?" + urllib.parse.urlencode(now, safe=",")


def link_box(dashboard):
    """A 'link to this view' button and what it writes: the page's full URL with the view's
    query (shown by the page, which knows its own address) and a copy button; remembers the
    initial view so links carry only what was changed."""
    defaults = dashboard.view_defaults or view_texts(dashboard)
    button = W.Button(description="link to this view", icon="", layout=W.Layout(width="160px"))
    url = LinkBox()
    note = W.HTML()

    def write(_=None):
        q = link(dashboard, defaults)
        url.query = q
        note.value = ("<span style='color:#555'>(the default view: nothing changed)</span>"
                      if q == "?" else "")
    button.on_click(write)
    box = W.HBox([button, url, note], layout=W.Layout(flex_flow="row wrap",
                                                      align_items="center"))
    box.url, box.note = url, note
    return box
