"""The spectra app's three heatmaps — exact, approximation, difference — on one colour scale,
over the part of the matrices a browser redraws quickly, with lines at the layer boundaries."""

import numpy as np
from plotly.subplots import make_subplots

from .marks import set_marks

HEAT_MAX = 400   # a browser redraws a heatmap of this many rows well within a second


def heatmaps():
    """Exact, approximation and difference side by side, on one reversed RdBu scale."""
    heat = make_subplots(rows=1, cols=3, subplot_titles=("exact", "approximation", "difference"),
                         horizontal_spacing=0.04)
    for c, name in enumerate(("exact", "approximation", "difference")):
        heat.add_heatmap(z=np.zeros((2, 2)), row=1, col=c + 1, colorscale="RdBu", zmid=0,
                         showscale=(c == 2), reversescale=True, name=name)
    heat.update_yaxes(autorange="reversed", scaleanchor=None)
    heat.update_layout(height=380, margin=dict(l=30, r=10, t=90, b=20),
                       title="heatmaps: exact vs approximation")
    return heat


def heat_window(problem, R, C, layer):
    """The part of the matrices the heatmaps show: all of them when small, else the block of
    the chosen layer (the first when 'whole'), cropped to HEAT_MAX rows; with the layer
    boundaries and a note for the title."""
    sizes = [lay.size for lay in problem.model.layers]
    if len(R) <= HEAT_MAX and layer < 0:
        return R, C, np.cumsum(sizes)[:-1] - 0.5, ""
    layer = max(layer, 0)
    sl = problem.model.layer_slices()[layer]
    n = min(sl.stop - sl.start, HEAT_MAX)
    idx = slice(sl.start, sl.start + n)
    crop = "" if n == sizes[layer] else f", first {n} rows"
    return R[idx, idx], C[idx, idx], np.zeros(0), f" (block W{layer + 1}{crop})"


def heat_fig(fig, problem, R, C, ref, approx, layer):
    """Draw exact R, approximation C and C − R (named so in the legend and the CSV)."""
    R, C, bounds, note = heat_window(problem, R, C, layer)
    lim = float(np.abs(R).max()) or 1.0
    names = (f"exact {ref}", approx, f"{approx} − {ref}")
    with fig.batch_update():
        for tr, Z, name in zip(fig.data, (R, C, C - R), names):
            tr.z, tr.zmin, tr.zmax, tr.name = Z, -lim, lim, name
        set_marks(fig, "layer boundary", boundaries(bounds, len(R)))
        fig.layout.annotations[0].text = names[0] + note
        fig.layout.annotations[1].text = names[1]
        fig.layout.annotations[2].text = names[2]


def boundaries(bounds, n):
    """Black lines at the layer boundaries `bounds` of an n × n heatmap, on all three."""
    line = [dict(type="line", xref=f"x{ax}", yref=f"y{ax}", line=dict(color="black", width=1))
            for ax in ("", "2", "3") for _ in bounds]
    across = [b for _ in range(3) for b in bounds]
    return ([dict(s, x0=b, x1=b, y0=-0.5, y1=n - 0.5) for s, b in zip(line, across)]
            + [dict(s, y0=b, y1=b, x0=-0.5, x1=n - 0.5) for s, b in zip(line, across)])
