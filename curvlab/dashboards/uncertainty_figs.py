"""The uncertainty app's problems (trained once to a minimum, cached), its computations and its
empty figures (`uncertainty`)."""

import functools

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import curvlab as cl

from .figure import FigureWidget
from .menus import kind_color, kind_dash

REFERENCE = "ggn"            # the exact GGN: every kind is shown beside it
SLOTS = 3                    # confidence maps: the GGN's and up to two chosen kinds'
LOO_CAP = 20                 # leave-one-out retrains at most this many training points
DELTAS = np.logspace(-3, 3, 49)      # the marginal likelihood's prior precisions
GRID = np.linspace(-1.75, 2.75, 31)  # the confidence maps' axes (moons)
LINE = np.linspace(-4.0, 4.0, 121)   # the bands' inputs (regression; the data lie in [-2, 2])

PROBLEMS = {
    # name: (data, test data, hidden layer, loss, l2); each a small tanh MLP
    "regression1d": (lambda: cl.datasets.regression1d(n=40, seed=0),
                       lambda: cl.datasets.regression1d(n=10, seed=1), 8, "mse", 1e-2),
    "moons": (lambda: cl.datasets.moons(n=60, seed=0),
                  lambda: cl.datasets.moons(n=10, seed=1), 8, "cross_entropy", 1e-2),
}


@functools.lru_cache(maxsize=8)
def problem_and_point(name):
    """(Problem, w, (X_test, y_test)) for a menu entry: Adam, then Newton's method to a minimum
    (‖∇L‖ ≤ 1e-9: leave-one-out needs one), done once and cached."""
    data, test, hidden, loss, l2 = PROBLEMS[name]
    X, y = data()
    K = 1 if loss == "mse" else int(y.max()) + 1
    model = cl.MLP([X.shape[1], hidden, K], activation="tanh")
    problem = cl.Problem(model, loss, X, y, l2=l2)
    w = cl.optim.minimize(problem, model.init(seed=0), "adam", steps=1000, lr=0.01).ws[-1]
    w = cl.optim.minimize(problem, w, "newton", steps=50, gtol=1e-9).ws[-1]
    return problem, w, test()


def regression(problem):
    return problem.lossfn.name == "mse"


def inputs(problem):
    """The inputs the predictive is drawn at: a line (1-D) or a grid, flattened (2-D)."""
    if regression(problem):
        return LINE[:, None]
    g1, g2 = np.meshgrid(GRID, GRID)
    return np.stack([g1.ravel(), g2.ravel()], axis=1)


def predictive(problem, w, kind, delta, sigma):
    """1-D: (mean, functional std) on LINE; 2-D: the probit confidence max_k p_k on GRID
    (rows: the second input), and the log marginal likelihood over DELTAS with its optimum
    (δ*, value) — for an indefinite C, NaN where Λ is not positive definite and no optimum."""
    reg = regression(problem)
    la = cl.laplace(problem, w, kind, prior_precision=delta, sigma_noise=sigma if reg else None)
    X = inputs(problem)
    if reg:
        mean, var = la.predictive(X)
        shown = (mean[:, 0], np.sqrt(var[:, 0, 0]))
    else:
        shown = la.predictive(X, link="probit").max(axis=1).reshape(len(GRID), len(GRID))
    try:
        curve = la.log_marginal_likelihood(DELTAS)
        best = la.optimize_prior_precision().prior_precision
        return shown, curve, (best, float(la.log_marginal_likelihood(best)))
    except np.linalg.LinAlgError:         # an indefinite C (the Hessian's): Λ is PD for large δ
        return shown, np.array([_evidence(la, d) for d in DELTAS]), None


def _evidence(la, delta):
    try:
        return la.log_marginal_likelihood(delta)
    except np.linalg.LinAlgError:
        return np.nan


def loo_points(problem):
    """The capped subset of training points leave-one-out retrains without: evenly spaced."""
    return np.unique(np.linspace(0, problem.N - 1, min(LOO_CAP, problem.N)).astype(int))


def band_figure(kinds):
    """1-D: the data, the GGN's mean and ±2 std band (filled), each kind's band edges."""
    empty = dict(x=np.zeros(0), y=np.zeros(0))
    data = [go.Scatter(name="data", mode="markers", marker=dict(color="black", size=5), **empty),
            go.Scatter(name="ggn +2 std", line=dict(width=0), showlegend=False, **empty),
            go.Scatter(name="ggn ±2 std", fill="tonexty", line=dict(width=0),
                       fillcolor="rgba(0,114,178,0.25)", **empty),
            go.Scatter(name="mean", line=dict(color=kind_color(REFERENCE), width=2), **empty)]
    data += [go.Scatter(name=k, visible=False, line=dict(color=kind_color(k), dash=kind_dash(k)),
                        **empty) for k in kinds]
    return FigureWidget(data=data, layout=go.Layout(
        title="Predictive band: mean ± 2 std (GLM, without σ)", height=400,
        xaxis_title="x", yaxis_title="y", margin=dict(l=50, r=10, t=40, b=40)))


def map_figure():
    """2-D: SLOTS confidence maps side by side (slot 0 the GGN's), with the training points."""
    fig = make_subplots(rows=1, cols=SLOTS, subplot_titles=[" "] * SLOTS,
                        horizontal_spacing=0.03, shared_yaxes=True)
    for i in range(SLOTS):
        fig.add_trace(go.Heatmap(z=np.zeros((2, 2)), zmin=0.5, zmax=1.0, colorscale="Viridis",
                                 showscale=i == 0, name=f"map {i + 1}",
                                 colorbar=dict(title="conf.", x=1.01)), 1, i + 1)
        fig.add_trace(go.Scatter(x=np.zeros(0), y=np.zeros(0), mode="markers",
                                 name=f"data {i + 1}", showlegend=False,
                                 marker=dict(size=4, color="white",
                                             line=dict(color="black", width=0.5))), 1, i + 1)
    fig.update_layout(title="Confidence max p (probit), GGN and each kind", height=330,
                      margin=dict(l=40, r=10, t=100, b=30))
    return FigureWidget(fig)


def evidence_figure(kinds):
    """The log marginal likelihood against δ per kind (lines) and each optimum (a star)."""
    data = []
    for k in [REFERENCE] + kinds:
        style = dict(color=kind_color(k))
        data += [go.Scatter(name=k, visible=False, x=np.zeros(0), y=np.zeros(0),
                            line=dict(style, dash=kind_dash(k))),
                 go.Scatter(name=f"{k} optimum", visible=False, x=np.zeros(0), y=np.zeros(0),
                            mode="markers", showlegend=False,
                            marker=dict(style, symbol="star", size=13))]
    return FigureWidget(data=data, layout=go.Layout(
        title="Log marginal likelihood against the prior precision δ", height=400,
        xaxis=dict(title="prior precision δ", type="log"), yaxis_title="log p(D)",
        margin=dict(l=60, r=10, t=40, b=40)))
