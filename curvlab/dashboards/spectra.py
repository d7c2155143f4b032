"""Spectra and approximations: eigenvalue spectra of every curvature matrix (log scale, the
negative part shown), per layer or whole; SLQ densities; heatmaps of exact vs approximation vs
difference; the comparison table."""

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import curvlab as cl

from .base import Dashboard, guarded
from .figure import FigureWidget
from .marks import set_marks
from .menus import kind_color, kind_menu
from .widgets import STYLE, log_slider, panels, read_array, table_html

YOURS = "yours"             # your own matrix (a file), beside the registered kinds
# the table's rows: the classic approximations of the GGN and the empirical Fisher
COMPARED = ("kfac", "kflr", "kfra", "diagonal", "empirical_fisher")
# A file upload travels in one widget message, which Voila's websocket caps at 10 MB: a float64
# P x P matrix fits up to P ≈ 1,100. Larger matrices go through the notebook API
# (cl.compare(..., extra={"name": M}), cl.spectrum(M)).
MAX_UPLOAD_P = 1000


class SpectraDashboard(Dashboard):
    title = "Spectra and approximations"

    CAPTIONS = {
        "spec_fig":
            "The eigenvalues λ of each chosen matrix, sorted by size, as |λ| on a log axis; open "
            "markers are negative eigenvalues (only the Hessian has them: the GGN and the Fishers "
            "are positive semi-definite). 'scope' restricts every matrix to one layer's diagonal "
            "block.",
        "slq_fig":
            "The spectral density estimated without forming the matrix, by stochastic Lanczos "
            "quadrature (Lanczos runs from random vectors, Gaussian-smoothed): the way to see a "
            "spectrum of a matrix too large to decompose.",
        "heat_fig":
            "The exact matrix, the approximation and their difference as heatmaps on one colour "
            "scale, over the chosen scope: where the approximation's error sits.",
    }
    TRY_THIS = [
        "Compare the Hessian with the GGN at state initialisation and at trained: the Hessian's "
        "negative eigenvalues (open markers) shrink as the residuals do.",
        "Set approx. = kflr, exact = ggn and scope = W1: the difference heatmap shows what the "
        "Kronecker product misses of the exact layer block (it would be exact for a single "
        "sample).",
        "Set approx. = kfac and then kflr: the Monte-Carlo K-FAC adds sampling noise on top of the "
        "factorisation's error.",
        "Tick SLQ density and compare its bumps with the exact eigenvalues above.",
        "Load a matrix from your own tool under 'your matrix' (a .npy of shape (P, P) in curvlab's "
        "flat layout) and compare it with the exact GGN.",
    ]

    def __init__(self, **picker):
        super().__init__(**picker)
        st = STYLE
        # the registered kinds, read now (not at import); the Hessian is a reference only
        self.kind_names = kind_menu()
        self.approx_names = [k for k in self.kind_names if k != "hessian"]
        self.kinds = W.SelectMultiple(options=self.kind_names,
                                      value=("hessian", "ggn", "kflr", "kfra"), rows=10,
                                      description="matrices", style=st,
                                      layout=W.Layout(width="230px"))
        self.scope = W.Dropdown(options=[("whole", -1)], value=-1, description="scope", style=st,
                                layout=W.Layout(width="170px"))
        self.approx = W.Dropdown(options=self.approx_names, value="kflr", description="approx.",
                                 style=st, layout=W.Layout(width="200px"))
        self.reference = W.Dropdown(options=["ggn", "hessian"], value="ggn", description="exact",
                                    style=st, layout=W.Layout(width="170px"))
        self.damping = log_slider("damping", 1e-3, -6, 2)
        self.slq = W.Checkbox(value=False, description="SLQ density (matrix-free)")
        self.upload = W.FileUpload(accept=".npy,.npz", multiple=False, description="your matrix",
                                   layout=W.Layout(width="170px"))
        self.uploaded = None                     # (file name, the matrix as a curvature object)
        self.table = W.HTML()

        lay = dict(margin=dict(l=60, r=10, t=40, b=40))
        self.spec_fig = FigureWidget(layout=go.Layout(
            title="eigenvalues by rank (|λ|, log scale; open markers: negative λ)",
            xaxis_title="rank", yaxis=dict(title="|λ|", type="log"), height=400, **lay))
        for k in self.kind_names + [YOURS]:
            c = kind_color(k)
            self.spec_fig.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="markers+lines", name=k,
                                      legendgroup=k, line=dict(color=c, width=1),
                                      marker=dict(size=4), visible=False)
            self.spec_fig.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="markers",
                                      name=f"{k} (λ<0)", legendgroup=k, showlegend=False,
                                      marker=dict(color=c, size=7, symbol="circle-open"),
                                      visible=False)
        self.slq_fig = FigureWidget(layout=go.Layout(
            title="SLQ spectral density", xaxis_title="λ", yaxis=dict(title="density", type="log"),
            height=300, **lay))
        for k in ("hessian", "ggn"):
            self.slq_fig.add_scatter(x=np.zeros(0), y=np.zeros(0), name=k,
                                     line=dict(color=kind_color(k)))
        self.heat_fig = FigureWidget(_heatmaps())

        self.picker.observe(self._on_problem)
        for c in (self.kinds, self.scope):
            c.observe(self._on_spectrum, names="value")
        for c in (self.approx, self.reference, self.damping, self.scope):
            c.observe(self._on_compare, names="value")
        self.slq.observe(self._on_slq, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.slq_box = W.Box([self.slq_fig], layout=W.Layout(display="none"))

        controls = W.VBox([self.picker.widget,
                           W.HBox([self.kinds, W.VBox([self.scope, self.slq, self.approx,
                                                       self.reference, self.damping,
                                                       self.upload])])])
        self.widget = W.VBox([self.header(), controls, self.status.widget,
                              panels(self.spec_fig, W.VBox([self.table, self.slq_box])),
                              panels(self.heat_fig, wide=True)])
        self._on_problem()
        self.finish()

    def _matrix(self, kind):
        if kind == YOURS:
            return self.uploaded[1]
        problem, w = self.picker.get()
        return self.cache.get(("matrix", self.picker.value, kind),
                              lambda: cl.matrix(problem, w, kind))

    def _dense(self, kind):
        """The matrix of `kind` as a dense array, kept for the current problem only (P² numbers
        each): scope and menu changes only pick from it."""
        if kind == YOURS:
            return self.uploaded[1].to_dense()
        if getattr(self, "_dense_for", None) != self.picker.value:
            self._dense_for, self._dense_kept = self.picker.value, {}
        if kind not in self._dense_kept:
            self._dense_kept[kind] = self._matrix(kind).to_dense()
        return self._dense_kept[kind]

    def _eigs(self, kind, layer):
        if kind == YOURS:
            M = self.uploaded[1]
            return M.eigvalsh() if layer < 0 else np.linalg.eigvalsh(M.blocks()[layer])

        def make():
            problem, w = self.picker.get()
            return cl.spectrum(problem, w, kind, layer=None if layer < 0 else layer)
        return self.cache.get(("eig", self.picker.value, kind, layer), make)

    @guarded
    def _on_upload(self, change=None):
        if not self.upload.value:
            return
        f = self.upload.value[0]
        self.load_matrix(f["name"], bytes(f["content"]))

    def load_matrix(self, name, content):
        """Take a .npy / .npz file's bytes as your own matrix for the current problem: its
        spectrum beside the others, a row in the table, the heatmaps' 'approximation'."""
        problem, _ = self.picker.get()
        data = read_array(name, content)
        if data.ndim == 2 and data.shape[0] > MAX_UPLOAD_P:
            raise ValueError(f"{name}: {data.shape[0]} x {data.shape[0]} is larger than the app "
                             f"takes (P ≤ {MAX_UPLOAD_P}); use cl.compare(..., "
                             "extra={'name': M}) in a notebook")
        M = cl.as_matrix(data, problem.n_params, name, problem.model.layer_slices())
        self.uploaded = (name, M)
        self.kinds.options = self.kind_names + [YOURS]
        self.approx.options = self.approx_names + [YOURS]
        self.kinds.value = tuple(dict.fromkeys(self.kinds.value + (YOURS,)))
        self.approx.value = YOURS
        self._on_compare()

    @guarded
    def _on_problem(self, change=None):
        with self.status.busy("building the problem"):
            problem, _ = self.picker.get()
        if self.uploaded is not None:        # a matrix belongs to the problem it was made for
            self.uploaded = None
            self.kinds.value = tuple(k for k in self.kinds.value if k != YOURS)
            self.kinds.options, self.approx.options = self.kind_names, self.approx_names
        opts = [("whole", -1)] + [(f"W{l + 1}", l) for l in range(len(problem.model.layers))]
        if list(self.scope.options) != opts:
            self.scope.options = opts
            self.scope.value = -1
        self._on_spectrum()
        self._on_compare()
        if self.slq.value:
            self._on_slq()

    @guarded
    def _on_spectrum(self, change=None):
        kinds, layer = self.kinds.value, self.scope.value
        with self.status.busy("eigenvalues", total=len(kinds)) as b:
            vals = {}
            for k in kinds:
                vals[k] = self._eigs(k, layer)
                b.step()
        with self.spec_fig.batch_update():
            for i, k in enumerate(self.kind_names + [YOURS]):
                pos, neg = self.spec_fig.data[2 * i], self.spec_fig.data[2 * i + 1]
                pos.visible = neg.visible = k in vals
                if k in vals:
                    v = vals[k][::-1]
                    rank = np.arange(1, len(v) + 1)
                    mag = np.abs(v)
                    floor = max(mag.max(), 1e-300) * 1e-14       # |λ| below rounding: not drawn
                    pos.x, pos.y = rank, np.where((v > 0) & (mag > floor), mag, np.nan)
                    neg.x, neg.y = rank, np.where((v < 0) & (mag > floor), mag, np.nan)
        P = len(next(iter(vals.values()))) if vals else 0
        self.status.info(f"{len(vals)} spectra of {P} eigenvalues, {self.status.seconds:.2f} s")

    @guarded
    def _on_compare(self, change=None):
        problem, w = self.picker.get()
        approx, ref, eta = self.approx.value, self.reference.value, self.damping.value
        refs = ("ggn", "hessian")
        with self.status.busy("comparison table and heatmaps"):
            rows = self.cache.get(("compare", self.picker.value, eta), lambda: cl.compare(
                problem, w, kinds=COMPARED, damping=eta, references=refs))
            if self.uploaded is not None:
                rows = rows + cl.compare(problem, w, kinds=(), damping=eta, references=refs,
                                         extra={f"yours ({self.uploaded[0]})": self.uploaded[1]})
            R, C = self._dense(ref), self._dense(approx)
        R, C, bounds, note = self._heat_window(problem, R, C)
        self.table.value = "<b>approximation quality</b> (damping %.1e)" % eta + table_html(
            ["kind", "vs", "rel. Frobenius", "cos(steps)", "top-5 overlap", "trace ratio",
             "log det ratio"],
            [(r.kind, r.reference, r.rel_frobenius, r.cosine, r.subspace_overlap, r.trace_ratio,
              r.logdet_ratio) for r in rows])
        lim = float(np.abs(R).max()) or 1.0
        with self.heat_fig.batch_update():
            for tr, Z in zip(self.heat_fig.data, (R, C, C - R)):
                tr.z, tr.zmin, tr.zmax = Z, -lim, lim
            set_marks(self.heat_fig, "layer boundary", _boundaries(bounds, len(R)))
            self.heat_fig.layout.annotations[0].text = f"exact {ref}{note}"
            self.heat_fig.layout.annotations[1].text = approx
            self.heat_fig.layout.annotations[2].text = f"{approx} − {ref}"

    HEAT_MAX = 400   # a browser redraws a heatmap of this many rows well within a second

    def _heat_window(self, problem, R, C):
        """The part of the matrices the heatmaps show: all of them when small, else the block of
        the chosen layer (the first when 'whole'), cropped to HEAT_MAX rows."""
        sizes = [layer.size for layer in problem.model.layers]
        if len(R) <= self.HEAT_MAX and self.scope.value < 0:
            return R, C, np.cumsum(sizes)[:-1] - 0.5, ""
        layer = max(self.scope.value, 0)
        sl = problem.model.layer_slices()[layer]
        n = min(sl.stop - sl.start, self.HEAT_MAX)
        idx = slice(sl.start, sl.start + n)
        crop = "" if n == sizes[layer] else f", first {n} rows"
        return R[idx, idx], C[idx, idx], np.zeros(0), f" (block W{layer + 1}{crop})"

    @guarded
    def _on_slq(self, change=None):
        if not self.slq.value:
            self.slq_box.layout.display = "none"
            return
        self.slq_box.layout.display = None
        problem, w = self.picker.get()
        with self.status.busy("stochastic Lanczos quadrature", total=2) as b:
            with self.slq_fig.batch_update():
                for tr, kind in zip(self.slq_fig.data, ("hessian", "ggn")):
                    t, dens = self.cache.get(("slq", self.picker.value, kind), lambda: (
                        cl.slq_density(cl.operator(problem, w, kind), probes=8,
                                       steps=min(problem.n_params, 40))))
                    tr.x, tr.y = t, np.maximum(dens, 1e-12)
                    b.step()


def _heatmaps():
    """Exact, approximation and difference side by side, on one reversed RdBu scale."""
    heat = make_subplots(rows=1, cols=3, subplot_titles=("exact", "approximation", "difference"),
                         horizontal_spacing=0.04)
    for c in range(3):
        heat.add_heatmap(z=np.zeros((2, 2)), row=1, col=c + 1, colorscale="RdBu", zmid=0,
                         showscale=(c == 2), reversescale=True)
    heat.update_yaxes(autorange="reversed", scaleanchor=None)
    heat.update_layout(height=360, margin=dict(l=30, r=10, t=70, b=20),
                       title="heatmaps: exact vs approximation")
    return heat


def _boundaries(bounds, n):
    """Black lines at the layer boundaries `bounds` of an n × n heatmap, on all three."""
    line = [dict(type="line", xref=f"x{ax}", yref=f"y{ax}", line=dict(color="black", width=1))
            for ax in ("", "2", "3") for _ in bounds]
    across = [b for _ in range(3) for b in bounds]
    return ([dict(s, x0=b, x1=b, y0=-0.5, y1=n - 0.5) for s, b in zip(line, across)]
            + [dict(s, y0=b, y1=b, x0=-0.5, x1=n - 0.5) for s, b in zip(line, across)])
