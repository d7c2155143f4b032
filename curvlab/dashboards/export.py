"""Everything an app shows, as one CSV file in long form — panel, trace, i, x, y, z: each figure's
traces by their names (a grid's z row by row with its x and y), its marks by their names, and
each table the app shows (panel: the table's title, trace: the row's first cell, x: the column,
y: the value) — and the one-click button that downloads it."""

import csv
import io

import numpy as np

from .marks import is_mark
from .pagewidgets import DownloadButton
from .widgets import slug


def _all_nan(values):
    """True when every value is NaN (False for text values)."""
    try:
        return bool(np.all(np.isnan(np.asarray(values, dtype=float))))
    except (TypeError, ValueError):          # text (category) values
        return False


def figure_rows(panel, fig):
    """[panel, trace, i, x, y, z] rows of every number figure `fig` plots."""
    for t in fig.data:
        if t.visible is False:
            continue
        z = getattr(t, "z", None)
        if z is not None and np.ndim(z) == 2:
            Z = np.asarray(z, dtype=float)
            xs = np.arange(Z.shape[1]) if t.x is None else np.asarray(t.x)
            ys = np.arange(Z.shape[0]) if t.y is None else np.asarray(t.y)
            for i, (r, c) in enumerate(np.ndindex(*Z.shape)):
                yield [panel, t.name, i, xs[c], ys[r], repr(float(Z[r, c]))]
            continue
        x, y = getattr(t, "x", None), getattr(t, "y", None)
        if y is None or _all_nan(y):                                 # (NaN: a legend entry only)
            continue
        x = np.arange(len(y)) if x is None else x
        for i, (a, b) in enumerate(zip(x, y)):
            yield [panel, t.name, i, a, b, ""]
    count = {}                              # points per mark name, numbered on across its shapes
    for mark in filter(is_mark, fig.layout.shapes):
        if mark.xsizemode == "pixel":
            points = [(mark.xanchor, mark.yanchor)]
        else:
            points = [(mark.x0, mark.y0), (mark.x1, mark.y1)]
            points = points[:1] if points[0] == points[1] or mark.yref == "paper" else points
        for a, b in points:
            i = count[mark.name] = count.get(mark.name, -1) + 1
            yield [panel, mark.name, i, a, "" if mark.yref == "paper" else b, ""]


def table_rows(title, header, rows):
    """[panel, trace, i, x, y, z] rows of a table: one per cell after the first column."""
    for row in rows:
        for j, (column, value) in enumerate(zip(header[1:], row[1:])):
            yield [title, row[0], j, column, value, ""]


def numbers_csv(dashboard):
    """The CSV text of everything `dashboard` shows (module docstring)."""
    out = io.StringIO()
    rows = csv.writer(out, lineterminator="\n")
    rows.writerow(["panel", "trace", "i", "x", "y", "z"])
    for name, fig in dashboard.named_figures().items():
        rows.writerows(figure_rows(fig.layout.title.text or name, fig))
    for title, header, body in dashboard.tables.values():
        rows.writerows(table_rows(title, header, body))
    return out.getvalue()


def csv_button(dashboard):
    """The 'numbers as CSV' button: one press downloads curvlab-<app>.csv."""
    app = slug(type(dashboard).__name__.lower().removesuffix("dashboard"))
    return DownloadButton(lambda: numbers_csv(dashboard), f"curvlab-{app}.csv",
                          description="numbers as CSV",
                          tooltip="every plotted number and table, one row per value")
