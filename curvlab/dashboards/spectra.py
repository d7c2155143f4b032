"""Spectra and approximations: eigenvalue spectra of every curvature matrix (log scale, the
negative part shown), per layer or whole; SLQ densities; heatmaps of exact vs approximation vs
difference; the comparison table."""

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

import curvlab as cl
from curvlab.curvature import registry

from .base import Dashboard, guarded
from .densities import scoped_density
from .figure import FigureWidget
from .heatmaps import heat_fig, heatmaps
from .lessons import Lesson
from .marks import set_note
from .menus import defined_on, kind_color, kind_dash, kind_menu, left_out_note
from .uploads import MatrixUpload, read_matrix
from .widgets import STYLE, log_slider, panels, with_hint

YOURS = "yours"             # your own matrix (a file), beside the registered kinds
# the table's rows: the classic approximations of the GGN and the empirical Fisher
COMPARED = ("kfac", "kflr", "kfra", "diagonal", "empirical_fisher")
# A file upload travels in one widget message, which Voila's websocket caps at 10 MB: a float64
# P x P matrix fits up to P ≈ 1,100. Larger matrices go through the notebook API
# (cl.compare(..., extra={"name": M}), cl.spectrum(M)).
MAX_UPLOAD_P = 1000
ZERO = 1e-14          # |λ| ≤ ZERO·max|λ|: zero to rounding, which a log axis cannot show
SLQ_DEPTH = 1e-6      # the SLQ density is drawn down to this fraction of its peak
QUALITY = "approximation quality"
TABLE_CAPTION = (
    "Each row compares an approximation C (kind) with an exact matrix R (vs), both with the "
    "damping η added. rel. Frobenius: ‖C − R‖ / ‖R‖ over the whole matrix (0 is exact); with a "
    "layer as scope, the same over that layer's diagonal block too. cos(steps): the cosine "
    "between the damped steps (C + ηI)⁻¹g and (R + ηI)⁻¹g (1: the same direction). top-5 "
    "overlap: the share of R's top-5 eigenvector space that C's top-5 span (1: the same "
    "space). trace ratio: tr C / tr R (1: the same total curvature). log det ratio: "
    "log det(C + ηI) − log det(R + ηI). nan there means C + ηI or R + ηI is not positive "
    "definite — the Hessian away from a minimum, or a matrix with an eigenvalue at or below "
    "−η — where a log-determinant is not a real number.")


class SpectraDashboard(Dashboard):
    title = "Spectra and approximations"

    CAPTIONS = {
        "spec_fig":
            "The eigenvalues λ of each chosen matrix, sorted by size, as |λ| on a log axis; open "
            "markers are negative eigenvalues (only the Hessian has them: the GGN and the Fishers "
            "are positive semi-definite). 'scope' restricts every matrix to one layer's diagonal "
            "block. Eigenvalues that are zero to rounding (|λ| ≤ 1e-14·max|λ|) have no place on "
            "a log axis: the note in the plot counts them per matrix.",
        "slq_fig":
            "The spectral density of each chosen matrix over the chosen scope, estimated from "
            "matrix-vector products alone by stochastic Lanczos quadrature (Lanczos runs from 8 "
            "random vectors, Gaussian-smoothed): the way to see the spectrum of a matrix too "
            "large to decompose. Drawn down to 1e-6 of each curve's peak.",
        "heat_fig":
            "The exact matrix, the approximation and their difference as heatmaps on one colour "
            "scale, over the chosen scope: where the approximation's error sits.",
    }
    TRY_THIS = [
        Lesson("Compare the Hessian with the GGN at state initialisation, then trained: the "
               "Hessian's negative eigenvalues (open markers) shrink as the residuals do — the "
               "largest |λ| among them falls more than tenfold.",
               "state=initialisation&matrices=hessian,ggn"),
        Lesson("Approx. kflr against exact ggn at scope W1: the difference heatmap shows what the "
               "Kronecker product misses of the exact layer block — which it would match exactly "
               "for a single sample.", "scope=W1&approx=kflr&exact=ggn"),
        Lesson("At scope W1, compare the table's rows for kfac and kflr against the ggn: the "
               "Monte-Carlo K-FAC adds sampling noise on top of the factorisation's error, so its "
               "block error is the larger.", "scope=W1&approx=kfac&exact=ggn"),
        Lesson("With SLQ density ticked, each matrix's density spans its eigenvalues in the plot "
               "above, and its rightmost bump sits at the largest of them — found from "
               "matrix-vector products alone.", "slq-density=1&matrices=hessian,ggn"),
        Lesson("Load a matrix from your own tool under 'your matrix' (a .npy of shape (P, P) in "
               "curvlab's flat layout): it joins the spectra, the table (against the exact GGN) "
               "and the heatmaps.", "exact=ggn&matrices=ggn,kflr"),
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
        # refuses a file over uploads.MAX_UPLOAD_BYTES in the page, before sending it
        self.upload = MatrixUpload(accept=".npy,.npz", description="your matrix")
        self.uploaded = None                     # (file name, the matrix as a curvature object)
        self.table = W.HTML()

        lay = dict(margin=dict(l=60, r=10, t=40, b=40))
        self.spec_fig = FigureWidget(layout=go.Layout(
            title="eigenvalues by rank (|λ|, log scale; open markers: negative λ)",
            xaxis_title="rank", yaxis=dict(title="|λ|", type="log"), height=400, **lay))
        for k in self.kind_names + [YOURS]:
            c = kind_color(k)
            self.spec_fig.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="markers+lines", name=k,
                                      legendgroup=k, line=dict(color=c, width=1,
                                                               dash=kind_dash(k)),
                                      marker=dict(size=4), visible=False)
            self.spec_fig.add_scatter(x=np.zeros(0), y=np.zeros(0), mode="markers",
                                      name=f"{k} (λ<0)", legendgroup=k, showlegend=False,
                                      marker=dict(color=c, size=7, symbol="circle-open"),
                                      visible=False)
        self.slq_fig = FigureWidget(layout=go.Layout(
            title="SLQ spectral density", xaxis_title="λ", yaxis=dict(title="density", type="log"),
            height=300, **lay))
        for k in self.kind_names + [YOURS]:
            self.slq_fig.add_scatter(x=np.zeros(0), y=np.zeros(0), name=k, visible=False,
                                     line=dict(color=kind_color(k), dash=kind_dash(k)))
        self.heat_fig = FigureWidget(heatmaps())

        self.picker.observe(self._on_problem)
        for c in (self.kinds, self.scope):
            c.observe(self._on_spectrum, names="value")
            c.observe(self._on_slq, names="value")
        for c in (self.approx, self.reference, self.damping, self.scope):
            c.observe(self._on_compare, names="value")
        self.slq.observe(self._on_slq, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.upload.observe(self._on_refused, names="refused")
        self.slq_box = W.Box([self.slq_fig], layout=W.Layout(display="none"))

        controls = W.VBox([self.picker.widget,
                           W.HBox([with_hint(self.kinds),
                                   W.VBox([self.scope, self.slq, self.approx, self.reference,
                                           self.damping, self.upload])])])
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

    def _operator(self, kind):
        """`kind`'s products, for SLQ: the registry's matrix-free product when it has one, else
        the built curvature object's."""
        if kind != YOURS and registry.REGISTRY[kind].matrix_free:
            problem, w = self.picker.get()
            return cl.operator(problem, w, kind)
        return self._matrix(kind).as_linear_operator()

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

    def _on_refused(self, change=None):
        if self.upload.refused:     # the page refused a file by its size; say it here too
            self.status.warn(self.upload.refused)
            self.upload.refused = ""        # so that the same refusal again is a change

    def load_matrix(self, name, content):
        """Take a .npy / .npz file's bytes as your own matrix for the current problem: its
        spectrum beside the others, a row in the table, the heatmaps' 'approximation'. The
        arrays' headers are checked first (uploads.read_matrix: shape × dtype within the
        upload limit), so an .npz that would inflate past it is refused unopened."""
        problem, _ = self.picker.get()
        data = read_matrix(name, content)
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
        kinds, left = defined_on(self.kinds.value, self.picker.get()[0])
        layer = self.scope.value
        with self.status.busy("eigenvalues", total=len(kinds)) as b:
            vals = {}
            for k in kinds:
                vals[k] = self._eigs(k, layer)
                b.step()
        zeros = {}
        with self.spec_fig.batch_update():
            for i, k in enumerate(self.kind_names + [YOURS]):
                pos, neg = self.spec_fig.data[2 * i], self.spec_fig.data[2 * i + 1]
                pos.visible = neg.visible = k in vals
                if k in vals:
                    v = vals[k][::-1]
                    rank = np.arange(1, len(v) + 1)
                    mag = np.abs(v)
                    floor = max(mag.max(), 1e-300) * ZERO       # |λ| below rounding: not drawn
                    pos.x, pos.y = rank, np.where((v > 0) & (mag > floor), mag, np.nan)
                    neg.x, neg.y = rank, np.where((v < 0) & (mag > floor), mag, np.nan)
                    if (mag <= floor).any():
                        zeros[k] = int((mag <= floor).sum())
            set_note(self.spec_fig, "zero", "zero to rounding, not drawn: " + ", ".join(
                f"{k} {n}" for k, n in zeros.items()) if zeros else "")
        self.zeros = zeros
        P = len(next(iter(vals.values()))) if vals else 0
        self.status.info(f"{len(vals)} spectra of {P} eigenvalues, {self.status.seconds:.2f} s"
                         + left_out_note(left))

    @guarded
    def _on_compare(self, change=None):
        problem, w = self.picker.get()
        approx, ref, eta = self.approx.value, self.reference.value, self.damping.value
        refs = ("ggn", "hessian")
        if defined_on([approx], problem)[1]:
            raise ValueError(f"{approx} is defined on chains of Dense and conv layers only: "
                             "pick another approximation for this net")
        with self.status.busy("comparison table and heatmaps"):
            rows = self.cache.get(("compare", self.picker.value, eta), lambda: cl.compare(
                problem, w, kinds=defined_on(COMPARED, problem)[0], damping=eta,
                references=refs))
            if self.uploaded is not None:
                rows = rows + cl.compare(problem, w, kinds=(), damping=eta, references=refs,
                                         extra={f"yours ({self.uploaded[0]})": self.uploaded[1]})
            R, C = self._dense(ref), self._dense(approx)
        layer = self.scope.value
        block = [f"rel. Frobenius, W{layer + 1} block"] if layer >= 0 else []
        self.show_table(
            self.table, QUALITY,
            ["kind", "vs", "rel. Frobenius", *block, "cos(steps)", "top-5 overlap",
             "trace ratio", "log det ratio"],
            [(r.kind, r.reference, r.rel_frobenius, *([r.layer_errors[layer]] if block else []),
              r.cosine, r.subspace_overlap, r.trace_ratio, r.logdet_ratio) for r in rows],
            note=(f"<div style='color:#555;max-width:640px;font-size:90%'>damping η = {eta:.1e}. "
                  f"{TABLE_CAPTION}</div>"))
        heat_fig(self.heat_fig, problem, R, C, ref, approx, layer)

    @guarded
    def _on_slq(self, change=None):
        if not self.slq.value:
            self.slq_box.layout.display = "none"
            return
        self.slq_box.layout.display = None
        problem, w = self.picker.get()
        kinds, layer = defined_on(self.kinds.value, problem)[0], self.scope.value
        with self.status.busy("stochastic Lanczos quadrature", total=len(kinds)) as b:
            curves = {}
            for k in kinds:
                curves[k] = self.cache.get(("slq", self.picker.value, k, layer), lambda k=k: (
                    scoped_density(problem, w, k, layer, self._operator(k))))
                b.step()
        with self.slq_fig.batch_update():
            for tr in self.slq_fig.data:
                tr.visible = tr.name in curves
                if tr.name in curves:
                    t, dens = curves[tr.name]
                    tr.x, tr.y = t, np.where(dens >= SLQ_DEPTH * dens.max(), dens, np.nan)
            where = "whole matrix" if layer < 0 else f"block W{layer + 1}"
            self.slq_fig.layout.title.text = f"SLQ spectral density ({where})"
