"""What a dashboard draws on a figure's layout rather than in its traces: marks (a step, a
value on an axis, a cross on a curve) and veils (a placeholder saying what to press, a note
that the plot is not current); and presentation mode, which scales both with the traces.

Marks are layout shapes because plotly redraws shapes alone, in a few ms, where a changed trace
redraws the whole plot, contours included (~60 ms in the browser)."""

import copy
import re

import numpy as np

from .figure import PRESENTATION_FONT

PLACEHOLDER, STALE = "curvlab-placeholder", "curvlab-stale"      # the veils' names


def overlay(fig, text, name):
    """Veil figure `fig` with a translucent sheet and a centred note (a placeholder saying what
    to press, or a mark that the plot is not current); `name` tags them for `clear_overlay`."""
    clear_overlay(fig, name)
    with fig.batch_update():
        fig.add_shape(type="rect", xref="paper", yref="paper", x0=0, x1=1, y0=0, y1=1,
                      layer="above", fillcolor="rgba(255,255,255,0.8)", line=dict(width=0),
                      name=name)
        fig.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                           font=dict(size=14, color="#5c4400"), bgcolor="#fff3cd", name=name)


def clear_overlay(fig, name):
    shapes, notes = fig.layout.shapes, fig.layout.annotations
    if any(s.name == name for s in shapes) or any(a.name == name for a in notes):
        with fig.batch_update():
            fig.layout.shapes = [s for s in shapes if s.name != name]
            fig.layout.annotations = [a for a in notes if a.name != name]


def set_marks(fig, name, shapes, labels=None):
    """Draw `shapes` as figure `fig`'s marks called `name`, replacing the previous ones and
    keeping every other shape (the veils, drawn above them); with `labels`, shape i is called
    "name: labels[i]" (a method's, a curve's mark). In presentation mode (the figure's font at
    PRESENTATION_FONT) they are drawn twice as large, as the traces are."""
    labels = [None] * len(shapes) if labels is None else list(labels)
    factor = 2.0 if fig.layout.font.size == PRESENTATION_FONT else 1.0
    new = [scaled(dict(s, name=name if label is None else f"{name}: {label}"), factor)
           for s, label in zip(shapes, labels)]
    fig.layout.shapes = new + [s for s in fig.layout.shapes if not is_mark(s, name)]


def is_mark(shape, name=None):
    """Whether `shape` is a mark called `name` (or "name: label"); with no name, any mark (a
    named shape that is not a veil)."""
    if name is None:
        return shape.name not in (None, PLACEHOLDER, STALE)
    return shape.name == name or (shape.name or "").startswith(name + ": ")


def marks(fig, name):
    """The shapes of `fig`'s marks called `name` (and "name: label")."""
    return [s for s in fig.layout.shapes if is_mark(s, name)]


def mark_points(fig, name):
    """{label (or name): (x, y)} of `fig`'s marks called `name`: a disc's or cross's centre, a
    line's far end."""
    out = {}
    for s in marks(fig, name):
        key = s.name.split(": ", 1)[1] if ": " in s.name else s.name
        out.setdefault(key, (s.xanchor, s.yanchor) if s.xsizemode == "pixel" else (s.x1, s.y1))
    return out


def scaled(shape, factor):
    """A mark's dict with its pixel sizes (a pixel-sized shape's extent or path) and its line
    width multiplied by `factor`."""
    shape = copy.deepcopy(shape)
    if factor == 1.0:
        return shape
    for axis in "xy":
        if shape.get(f"{axis}sizemode") == "pixel":
            for end in (f"{axis}0", f"{axis}1"):
                if shape.get(end) is not None:
                    shape[end] *= factor
    if shape.get("path") and shape.get("xsizemode") == "pixel":
        shape["path"] = re.sub(r"-?\d+(?:\.\d+)?", lambda m: f"{float(m.group()) * factor:g}",
                               shape["path"])
    line = shape.setdefault("line", {})
    line["width"] = (line.get("width") or 2) * factor
    return shape


def disc(x, y, color, radius=6):
    """A disc of `radius` pixels, outlined in black, centred at the data point (x, y)."""
    return dict(type="circle", xref="x", yref="y", xsizemode="pixel", ysizemode="pixel",
                xanchor=float(x), yanchor=float(y), x0=-radius, x1=radius, y0=-radius, y1=radius,
                fillcolor=color, line=dict(color="black", width=1.5))


def present(fig, on):
    """Presentation mode on (or off) for one figure: fonts, lines, markers and marks twice as
    large (for a projector), or back; inside one batch update."""
    factor = 2.0 if on else 0.5
    with fig.batch_update():
        fig.layout.font.size = PRESENTATION_FONT if on else None
        fig.layout.title.font.size = int(PRESENTATION_FONT * 1.2) if on else None
        for t in fig.data:
            line, marker = getattr(t, "line", None), getattr(t, "marker", None)
            if line is not None and "width" in line:
                line.width = (line.width or 2) * factor
            if marker is not None and "size" in marker and np.ndim(marker.size) == 0:
                marker.size = (marker.size or 6) * factor
        if any(is_mark(sh) for sh in fig.layout.shapes):              # the marks too
            fig.layout.shapes = [scaled(sh.to_plotly_json(), factor) if is_mark(sh) else sh
                                 for sh in fig.layout.shapes]


def set_note(fig, name, text):
    """A note called `name` in the top left corner of figure `fig`'s plot (what an axis clipped,
    where a curve left the frame), replacing the previous one; no note when `text` is empty.
    Its font follows the figure's (presentation mode)."""
    keep = [a for a in fig.layout.annotations if a.name != name]
    if text:
        keep.append(dict(text=text, name=name, xref="paper", yref="paper", x=0.01, y=0.99,
                         xanchor="left", yanchor="top", showarrow=False, align="left",
                         bgcolor="rgba(255,255,255,0.85)", bordercolor="#999", borderwidth=1,
                         font=dict(color="#333")))
    if len(keep) != len(fig.layout.annotations) or text:
        fig.layout.annotations = keep


def notes(fig, name):
    """The text of `fig`'s notes called `name`."""
    return [a.text for a in fig.layout.annotations if a.name == name]


def clip_note(values, lo, hi, fmt="{:.3g}"):
    """What clipping the axis to [lo, hi] hides of `values` ({curve name: array}): a phrase per
    curve with points beyond the axis ("actual: 23 points below −0.56, down to −44"), joined;
    '' when nothing is hidden."""
    out = []
    for name, v in values.items():
        v = np.asarray(v, dtype=float)
        below, above = v < lo, v > hi
        for mask, side, ext in ((below, "below", np.min), (above, "above", np.max)):
            if mask.any():
                n = int(mask.sum())
                out.append(f"{name}: {n} point{'s' * (n > 1)} {side} the axis "
                           f"({'down' if side == 'below' else 'up'} to {fmt.format(ext(v[mask]))})")
    return "clipped — " + "; ".join(out) if out else ""
