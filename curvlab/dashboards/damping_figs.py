"""The damping app's figures: built with a legend entry for every mark (in a visible colour),
and the helpers that frame what runs off them — an axis clipped with a note, the Newton step
marked where it lies or by an arrow at the frame's edge with its length."""

import numpy as np
import plotly.graph_objects as go

from .figure import LEGEND_BELOW, FigureWidget

ETAS = np.logspace(-6, 2, 81)
STEP_AT_ETA = "step at η"
NEWTON = "Newton step"
STEP_COLOR, PATH_COLOR, ALL_COLOR = "#D55E00", "#0072B2", "#000000"
FILTER_RANGE = (-0.05, 1.05)
RHO_RANGE = (-0.5, 1.5)
# the plane's loss in light greys (low: light), so the curves on it keep their colours
GREYS = [[0, "#f7f7f7"], [1, "#8c8c8c"]]


def vline(x):
    return dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                line=dict(color="gray", dash="dot"))


def legend_entry(name, **style):
    """A trace that only names a mark in the legend (a NaN point: nothing drawn, nothing in the
    CSV)."""
    return go.Scatter(x=np.full(1, np.nan), y=np.full(1, np.nan), name=name, **style)


def figures():
    """{attribute name: FigureWidget} of the damping app, empty."""
    lay = dict(height=320, margin=dict(l=55, r=10, t=40, b=40))
    none = dict(x=np.zeros(0), y=np.zeros(0))
    eta_line = legend_entry("η on the slider", mode="lines",
                            line=dict(color="gray", dash="dot"))
    out = {}
    out["filter_fig"] = FigureWidget(
        data=[go.Scatter(**none, mode="markers", name="ν > 0: ν/(ν+η)",
                         marker=dict(color="#0072B2")),
              go.Scatter(**none, mode="markers", name="ν < 0 (at |ν|)",
                         marker=dict(color="#D55E00", symbol="x"))],
        layout=go.Layout(title="filter factor per eigendirection (1: Newton-like)",
                         xaxis=dict(title="eigenvalue |ν|", type="log"),
                         yaxis=dict(title="ν/(ν+η)", range=list(FILTER_RANGE)), **lay))
    out["angle_fig"] = FigureWidget(
        data=[go.Scatter(x=ETAS, y=np.zeros_like(ETAS), name="cos(step, −g)"),
              go.Scatter(x=ETAS, y=np.zeros_like(ETAS), name="cos(step, Newton)"), eta_line],
        layout=go.Layout(title="angle of the damped step", xaxis=dict(title="η", type="log"),
                         yaxis=dict(title="cosine", range=[-1.05, 1.05]), **lay))
    out["decrease_fig"] = FigureWidget(
        data=[go.Scatter(x=ETAS, y=np.zeros_like(ETAS), name="predicted"),
              go.Scatter(x=ETAS, y=np.zeros_like(ETAS), name="actual"), eta_line],
        layout=go.Layout(title="decrease of the loss: model vs truth",
                         xaxis=dict(title="η", type="log"), yaxis=dict(title="L(w) − L(w+p)"),
                         **lay))
    out["plane_fig"] = FigureWidget(
        data=[go.Contour(z=np.zeros((2, 2)), colorscale=GREYS, ncontours=30, showscale=False,
                         name="loss"),
              go.Scatter(**none, mode="lines", name="steps for all η",
                         line=dict(color=ALL_COLOR, width=1.5)),
              # the step at η and Newton's are marks (set_marks); these name them
              legend_entry(STEP_AT_ETA, mode="lines+markers", line=dict(color=STEP_COLOR, width=3),
                           marker=dict(size=10)),
              go.Scatter(**none, mode="lines+markers", name="LM path",
                         line=dict(color=PATH_COLOR), marker=dict(size=5)),
              legend_entry(NEWTON + " (η = 1e-6)", mode="markers",
                           marker=dict(symbol="star", size=12, color="#E69F00",
                                       line=dict(color="black", width=1)))],
        layout=go.Layout(title="the step on the plane of −g and the Newton step",
                         xaxis_title="along −g", yaxis_title="⊥, towards Newton",
                         legend=LEGEND_BELOW, **dict(lay, height=380)))
    out["lm_fig"] = FigureWidget(
        data=[go.Scatter(**none, name="η_k", mode="lines+markers"),
              go.Scatter(**none, name="ρ_k", mode="lines+markers", yaxis="y2"),
              legend_entry("replay k", mode="lines", line=dict(color="gray", dash="dot"))],
        layout=go.Layout(title="Levenberg–Marquardt replay", xaxis_title="step k",
                         yaxis=dict(title="η", type="log"),
                         yaxis2=dict(title="ρ", overlaying="y", side="right",
                                     range=list(RHO_RANGE), type="linear", tickmode="auto",
                                     nticks=5, showgrid=False),
                         legend=LEGEND_BELOW, **lay))
    return out


def decrease_range(pred, actual, nu):
    """The decrease plot's y range: ± 1.2 × the largest decrease the model predicts where
    C + ηI is safely positive definite (η ≥ 2·|min ν| when C has a negative ν: near −min ν the
    step blows up), else over all η."""
    ok = np.isfinite(pred) & (ETAS >= -2 * min(float(np.min(nu)), 0.0))
    top = 1.2 * max(float(np.max(np.abs(pred[ok]))) if ok.any() else 0.0, 1e-12)
    return -top, top


def newton_mark(x, y, span, norm):
    """(shapes, annotations) that show the Newton step's end (x, y) on a frame of ±span: a star
    where it lies inside the frame; else an arrow at the frame's edge pointing its way, with its
    length."""
    if not (np.isfinite(x) and np.isfinite(y)):
        return [], []
    if max(abs(x), abs(y)) <= span:
        star = dict(type="path", xref="x", yref="y", xsizemode="pixel", ysizemode="pixel",
                    xanchor=float(x), yanchor=float(y), path="M0,-9L3,-3L9,-3L4,1L6,8L0,4L-6,8"
                    "L-4,1L-9,-3L-3,-3Z", fillcolor="#E69F00", line=dict(color="black", width=1))
        return [star], []
    scale = 0.96 * span / max(abs(x), abs(y))
    ex, ey = x * scale, y * scale                      # where the ray leaves the frame
    r = np.hypot(x, y)
    arrow = dict(x=float(ex), y=float(ey), xref="x", yref="y", showarrow=True, arrowhead=3,
                 arrowsize=1.5, arrowcolor="#E69F00", arrowwidth=2.5,
                 ax=float(-70 * x / r), ay=float(70 * y / r), name=NEWTON,
                 text=f"Newton step, ‖p‖ = {norm:.3g}<br>(off the frame)",
                 bgcolor="rgba(255,255,255,0.85)", font=dict(color="#333"))
    return [], [arrow]
