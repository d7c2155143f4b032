"""The dynamics app's figures (built once, empty) and the pure functions that fill them: the
spectrum heatmap over step × eigenvalue, the moving step mark, and the loss slice's plane (the
top two Hessian eigenvectors)."""

import numpy as np
import plotly.graph_objects as go

import curvlab as cl

from .figure import FigureWidget
from .marks import set_marks

TOP_K = 5            # top eigenvalues drawn as lines over the spectrum heatmap
GRID = 120           # eigenvalue rows of the heatmap
DEPTH = 1e-4         # the heatmap shows log10 density down to this fraction of its peak
NOW = "now"          # the name of the step mark on the time panels
LAY = dict(height=340, margin=dict(l=60, r=10, t=40, b=40))
DENSE_PLANE = 600    # up to this many parameters the slice's plane comes from a dense eigh


def top_two(problem, w, dense_limit=DENSE_PLANE):
    """(u₁, u₂): unit eigenvectors of the Hessian at w for its two largest (algebraic)
    eigenvalues λ₁ ≥ λ₂, each signed to have a positive inner product with one fixed random
    vector (seed 0): an eigenvector's sign is arbitrary; fixed so, the plane does not flip as
    the step moves, and two solvers agree (a largest entry can tie with its negative).

    P ≤ dense_limit: one dense Hessian (P Hessian-vector products' worth) and `eigh`, O(P³).
    Above: Lanczos (ARPACK's `eigsh`, k = 2, 'LA', seeded start) on Pearlmutter's matrix-free
    Hv (`cl.operator`), a few dozen products and O(P) memory — no P × P matrix."""
    P = w.shape[0]
    if P <= dense_limit:
        _, V = np.linalg.eigh(cl.hessian(problem, w, progress=False))
        d1, d2 = V[:, -1], V[:, -2]
    else:
        _, V = cl.linalg.lanczos_eigs(cl.operator(problem, w, "hessian"), 2, "LA", vectors=True)
        d1, d2 = V[:, 1], V[:, 0]                      # ascending: λ₂, λ₁
    r = np.random.default_rng(0).standard_normal(P)
    return tuple(d if d @ r >= 0 else -d for d in (d1, d2))


def figures():
    """{attribute name: FigureWidget} of the app, each with its traces in place."""
    loss = FigureWidget(layout=go.Layout(title="loss (every step)", xaxis_title="step",
                                         yaxis=dict(title="loss", type="log"), **LAY))
    loss.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="lines", name="loss",
                     line=dict(color="#1f77b4", width=1.5))
    sharp = FigureWidget(layout=go.Layout(title="sharpness λ₁ and its threshold",
                                          xaxis_title="step", yaxis_title="λ₁", **LAY))
    sharp.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="lines+markers", name="sharpness",
                      line=dict(color="#d62728"), marker=dict(size=4))
    sharp.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="lines", name="threshold",
                      line=dict(color="#555", dash="dash"))
    spec = FigureWidget(layout=go.Layout(title="Hessian spectrum along training",
                                         xaxis_title="step", yaxis_title="eigenvalue λ", **LAY))
    spec.add_heatmap(x=np.zeros(0), y=np.zeros(0), z=np.zeros((0, 0)), colorscale="Viridis",
                     name="log10 density", colorbar=dict(title="log₁₀ φ", len=0.8),
                     hovertemplate="step %{x}<br>λ %{y:.3g}<br>log₁₀ φ %{z:.2f}<extra></extra>")
    for i in range(TOP_K):
        spec.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="lines", name=f"λ{i + 1}",
                         line=dict(color="white", width=1.5 if i == 0 else 1,
                                   dash="solid" if i == 0 else "dot"), showlegend=False)
    overlap = FigureWidget(layout=go.Layout(title="gradient in the top eigenspace",
                                            xaxis_title="step",
                                            yaxis=dict(title="share of ‖∇L‖²", range=[0, 1.02]),
                                            **LAY))
    overlap.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="lines+markers", name="overlap",
                        line=dict(color="#2ca02c"), marker=dict(size=4))
    plane = FigureWidget(layout=go.Layout(title="loss slice through the weights at the step",
                                          xaxis_title="along u₁ (top eigenvector)",
                                          yaxis_title="along u₂", showlegend=False,
                                          **LAY))
    plane.add_contour(x=np.zeros(0), y=np.zeros(0), z=np.zeros((0, 0)), colorscale="Blues",
                      reversescale=True, ncontours=30, name="log10 loss",
                      colorbar=dict(title="log₁₀ L", len=0.8))
    plane.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="lines+markers", name="recorded steps",
                      line=dict(color="#888", width=1), marker=dict(size=4, color="#888"))
    plane.add_scatter(x=[0.0], y=[0.0], mode="markers+text", name="the step",
                      marker=dict(symbol="star", size=14, color="#d62728"),
                      text=["step 0"], textposition="top center")
    return dict(loss_fig=loss, sharp_fig=sharp, spec_fig=spec, overlap_fig=overlap,
                plane_fig=plane)


def smooth_density(eigvals, grid, sigma):
    """φ(t) = mean over eigenvalues of N(t; λᵢ, σ²): the exact spectrum, Gaussian-smoothed."""
    d = (grid[:, None] - eigvals[None, :]) / sigma
    return np.exp(-0.5 * d ** 2).mean(axis=1) / (sigma * np.sqrt(2 * np.pi))


def spectrum_map(run, slq):
    """(λ grid, z (grid × recorded steps) of log10 density, which): the SLQ densities of `run`
    when `slq`, else its exact eigenvalues smoothed, on one grid over every recorded step."""
    if slq:
        lo = min(g[0] for g, _ in run.density)
        hi = max(g[-1] for g, _ in run.density)
        grid = np.linspace(lo, hi, GRID)
        cols = [np.interp(grid, g, phi, left=0.0, right=0.0) for g, phi in run.density]
    else:
        E = np.asarray(run.eigvals)
        lo, hi = float(E.min()), float(E.max())
        pad = 0.05 * (hi - lo) + 1e-12
        grid = np.linspace(lo - pad, hi + pad, GRID)
        sigma = (hi - lo + 2 * pad) / 80
        cols = [smooth_density(e, grid, sigma) for e in E]
    Z = np.array(cols).T
    peak = Z.max() if Z.size and Z.max() > 0 else 1.0
    with np.errstate(divide="ignore"):
        logz = np.log10(np.maximum(Z, DEPTH * peak))
    return grid, logz, "SLQ" if slq else "exact eigenvalues, smoothed"


def mark_step(fig, step):
    """The dotted vertical line at `step` on a time panel."""
    set_marks(fig, NOW, [dict(type="line", xref="x", yref="paper", x0=step, x1=step, y0=0,
                              y1=1, line=dict(color="#d62728", width=1.5, dash="dot"))])


def now_step(fig):
    """The step the time panel `fig` marks (None without a mark)."""
    s = [s for s in fig.layout.shapes if s.name == NOW]
    return s[0].x0 if s else None
