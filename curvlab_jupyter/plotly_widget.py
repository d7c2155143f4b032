"""plotly's widget bundle, patched: the text the page evaluates for a FigureWidget.

plotly's FigureWidget is an anywidget whose front-end module (~5 MB: all of plotly.js) is sent
and evaluated once per figure. With several figures on a Voila page the later ones often never
receive an update: their plots freeze while the app keeps computing (reproduced with plain
go.FigureWidget and five scatter plots: the 4th and 5th stayed frozen in most page loads; see
bench/figurewidget_freeze.py). The patches below, applied to the minified bundle of the plotly
release curvlab pins (pyproject: plotly>=7.1,<7.2), fix that and two smaller things:

- "freeze": plotly.js is evaluated once per page; the module that carries it publishes the
  widget definition on a global slot, which a figure's module may wait on instead of carrying
  plotly.js itself (curvlab.dashboards.bundle);
- "view": each view listens through its own model handle, and follows its element's size;
- "relayout": Python's relayouts are counted in flight (`__fromPy`) instead of flagged with
  `_doNotReportToPy`, which made plotly.js redraw the whole plot.

The patches are keyed on bundler-generated names (`MD`, `j4t`, `Md`, …), so they are all or
nothing behind one gate (`patch`): every text a patch replaces must occur exactly once, or the
bundle is not the one curvlab adapts and FigureWidget stays plotly's own, with a warning.

`split` then makes the text the server sends (curvlab_jupyter): the same widget code with a
partial plotly.js, only the trace types curvlab's 2-D figures draw (scatter, contour, heatmap;
vendor/plotly-curvlab-4.1.1.min.js, 1.2 MB instead of 4.8 MB, built from plotly.js's sources by
tools/plotly_build), because evaluating all of plotly.js held a visitor's first plot ~1.6 s on a
quiet machine (issue 24; bench/first_render.py), and npm's cartesian bundle ~0.7 s against
~0.15 s for these three (bench/plotly_eval.py). A figure with another trace type (the landscape app's 3-D surface) gets
the whole plotly.js when its first view renders (`full_module`, beside the bundle), and that
view draws with it.

This module imports only the standard library (plotly when called): the Jupyter server loads it
(curvlab_jupyter serves the patched bundle) without importing curvlab's numerics.
"""

import json
import pathlib
import re
import warnings

GLOBAL = "globalThis.__curvlabPlotlyWidget"
SLOT = f"({GLOBAL} ??= (() => {{ let r; const p = new Promise(x => r = x); return {{p, r}}; }})())"

_RENDER = "render({el:ne}){let ge=new MD(Q,ne);return ge.perform_render(),()=>ge.remove()}"
_EXPORTS = "export{TD as FigureModel,MD as FigureView,j4t as default};"
_RELAYOUT = "ge._doNotReportToPy=!0,Md.default.relayout(this.el,ne.relayout_data)"
_AUTOSIZE = ('autosizeFigure(){var ne=this,ge=ne.model.get("_widget_layout");'
             '(qs.isNil(ge)||qs.isNil(ge.width))&&Md.default.Plots.resize(ne.el)')
_REPORTED = 'handle_plotly_relayout(ne){if(ne!=null&&!ne.hasOwnProperty("_doNotReportToPy")'

# name: [(text in plotly's bundle, its replacement)], applied in this order
PATCHES = {
    # Each view listens through its own model handle; and it follows its element's size
    # (plotly's widget only listens to the window, and not at all when rendered as an
    # anywidget): a figure without a fixed width fills its panel (see widgets.panels). Only a
    # drawn, displayed plot whose width changed: plotly refuses to resize a hidden one, and the
    # observer also fires on first sight and on height changes.
    "view": [(_RENDER,
              "render({model:mm,el:ne}){let sh=Object.create(Q);sh.on=(...a)=>mm.on(...a);"
              "sh.off=(...a)=>mm.off(...a);let ge=new MD(sh,ne);ge.perform_render();"
              "let tm,ro=new ResizeObserver(()=>{clearTimeout(tm);tm=setTimeout(()=>"
              "{if(ne._fullLayout&&ne.offsetParent!==null&&ne.clientWidth>0&&"
              "Math.abs(ne.clientWidth-ne._fullLayout.width)>1)ge.autosizeFigure()},50)});"
              "ro.observe(ne);return ()=>{ro.disconnect();clearTimeout(tm);ge.remove()}}"),
             # A height from Python (presentation mode's ×1.5) reaches plotly.js's relayout,
             # which then pins the width at the plot's current one (and autosize off), so the
             # plot stopped following its panel whenever that relayout came before the panel's
             # re-flow was seen. A width Python never set is the panel's: unpin it before
             # resizing (plotly's resize then keeps the drawn height).
             (_AUTOSIZE, _AUTOSIZE.replace("&&Md.default.Plots.resize(ne.el)",
                                           "&&(ne.el.layout&&delete ne.el.layout.width,"
                                           "Md.default.Plots.resize(ne.el))"))],
    # A layout change from Python (our marks are shapes) reached plotly.js with a flag, so that
    # the view does not report it back; but plotly takes the unknown key as a reason to redraw
    # the whole plot (~50 ms with contours) instead of the shapes alone (~2 ms). Count Python's
    # relayouts in flight instead, and report none while one is (safe against a throw).
    "relayout": [(_RELAYOUT,
                  "this.__fromPy=(this.__fromPy||0)+1;try{Md.default.relayout(this.el,"
                  "ne.relayout_data).finally(()=>{this.__fromPy--})}"
                  "catch(e){this.__fromPy--;throw e}"),
                 (_REPORTED, _REPORTED + "&&!(this.__fromPy>0)")],
    # The module that carries plotly.js resolves the global slot with the widget definition.
    "freeze": [(_EXPORTS, _EXPORTS + f"\n{SLOT}.r(j4t);\n")],
}


def plotly_source():
    """The text of the installed plotly's widget bundle."""
    import plotly
    return (pathlib.Path(plotly.__file__).parent / "package_data" / "widgetbundle.js").read_text()


def patch(src=None):
    """plotly's widget bundle (`src`, default the installed one) with every patch applied; None,
    with a warning, when it is not the bundle curvlab adapts (then FigureWidget is plotly's own,
    with its several-figure freeze)."""
    import plotly
    src = plotly_source() if src is None else src
    if any(src.count(old) != 1 for edits in PATCHES.values() for old, _ in edits):
        warnings.warn(f"curvlab.dashboards: the widget bundle of plotly {plotly.__version__} is "
                      "not the one curvlab adapts (plotly 7.1); using plotly's own FigureWidget, "
                      "whose later figures may stop updating on a Voila page with several of "
                      "them. Install curvlab's pinned plotly (pip install 'plotly>=7.1,<7.2').",
                      RuntimeWarning, stacklevel=2)
        return None
    for edits in PATCHES.values():
        for old, new in edits:
            src = src.replace(old, new)
    return src


# ---- the split bundle: a partial plotly.js at once, the whole one when a figure needs it -------

# vendor/: plotly.js 4.1.1 (MIT, vendor/LICENSE.plotly.js) with the trace types of PARTIAL_TYPES,
# built by tools/plotly_build (plotly.js's core and trace modules from npm, its esbuild settings
# and UMD wrapper): the version of plotly.js that plotly 7.1's widget bundle embeds and that it
# ships whole (package_data/plotly.min.js, which the other figures get).
PARTIAL_VERSION = "4.1.1"
PARTIAL_FILE = (pathlib.Path(__file__).parent / "vendor"
                / f"plotly-curvlab-{PARTIAL_VERSION}.min.js")
# its trace types (tools/plotly_build/build.mjs: scatter comes with plotly.js's core); a figure
# with any other type needs the whole plotly.js
PARTIAL_TYPES = ("contour", "heatmap", "scatter")
FULL_NAME = "plotly-full.js"        # the whole plotly.js as a module, beside the bundle's URL

# plotly.js inside the widget bundle: one CommonJS wrapper (esbuild's), from its head to its tail;
# the widget code after it calls plotly.js only as `Md.default.<fn>(graph div, …)`
_PLOTLY_HEAD = "var LQ=fbe((DQ,hA)=>{"
_PLOTLY_TAIL = "return window.Plotly=Q,Q})});"
_PLOTLY_USE = "Md.default."
_PLOTLY_USES = 11
_MD_DEF = "var Md=dbe(LQ());"
_VIEW_RENDER = "render({model:mm,el:ne}){"            # the "view" patch's render
# Every call goes to the plotly.js that drew its graph div: the whole one for a view that
# needed it (render sets `__curvlabPlotly` on its div before the view draws), else the partial.
_DISPATCH = ("var __curvlabPlotlyOf=new Proxy({},{get:(_,k)=>k===\"Plots\"?{resize:gd=>"
             "(gd.__curvlabPlotly||Md.default).Plots.resize(gd)}:(gd,...a)=>"
             "(gd.__curvlabPlotly||Md.default)[k](gd,...a)});")
_NEEDS_FULL = ("const __curvlabPartial=new Set({types});let __curvlabFull=null;"
               "function __curvlabPlotlyFor(mm,el){{const d=mm.get(\"_widget_data\")||[];"
               "if(d.every(t=>__curvlabPartial.has(t.type||\"scatter\")))return;"
               "__curvlabFull??=import(new URL({name},import.meta.url).href).then(m=>m.default,"
               "e=>{{__curvlabFull=null;throw e}});"
               "return __curvlabFull.then(P=>{{el.__curvlabPlotly=P}},e=>{{el.textContent="
               "\"curvlab: this figure needs the whole plotly.js, which did not load from \"+"
               "\"the server (\"+e+\"); reload the page.\";throw e}})}}")


def _version(head):
    found = re.search(r"plotly\.js[^\n]*? v(\d+\.\d+\.\d+)", head[:300])
    return found.group(1) if found else None


def plotly_full_source():
    """The text of the installed plotly's whole plotly.js (package_data/plotly.min.js, UMD)."""
    import plotly
    return (pathlib.Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()


def _split_failure(src, partial, full):
    """Why `split` cannot apply (a sentence), or None."""
    head, tail = src.find(_PLOTLY_HEAD), src.find(_PLOTLY_TAIL)
    embedded = re.findall(r'\.version="(\d+\.\d+\.\d+)"', src[max(head, 0):max(tail, 0)])
    versions = {"widget bundle": embedded[0] if len(embedded) == 1 else None,
                "plotly.min.js": _version(full), "partial bundle": _version(partial)}
    if set(versions.values()) != {PARTIAL_VERSION}:
        return (f"plotly.js versions {versions}: they must all be {PARTIAL_VERSION}, the "
                "version of curvlab's partial bundle")
    counts = [src.count(t) for t in (_PLOTLY_HEAD, _PLOTLY_TAIL, _MD_DEF, _VIEW_RENDER)]
    rest = src[tail:]
    if counts != [1, 1, 1, 1] or not 0 <= head < tail or rest.count(_PLOTLY_USE) != _PLOTLY_USES \
            or src.count(_PLOTLY_USE) != _PLOTLY_USES:
        return "the widget bundle is not laid out as the one curvlab splits"
    return None


def split(src, partial=None, full=None):
    """The patched bundle `src` (from `patch`) with plotly.js replaced by the partial bundle
    (`partial`, default the vendored one; `full`, default the installed plotly.min.js, only
    checked for its version), each view drawing with the plotly.js its traces need when it is
    first drawn (a trace of another type added to a figure drawn with the partial plotly.js later is
    not drawn: no curvlab app does that, each builds such a figure with its trace); None, with
    a warning, when the bundle or the versions are not the ones curvlab splits (the server then
    sends `src` whole)."""
    if partial is None and not PARTIAL_FILE.is_file():
        why = f"{PARTIAL_FILE} is missing (curvlab installed without its package data)"
    else:
        partial = PARTIAL_FILE.read_text() if partial is None else partial
        full = plotly_full_source() if full is None else full
        why = _split_failure(src, partial, full)
    if why:
        warnings.warn(f"curvlab_jupyter: plotly's widget code is sent whole (4.9 MB to evaluate "
                      f"before the first plot): {why}.", RuntimeWarning, stacklevel=2)
        return None
    head = src.find(_PLOTLY_HEAD)
    tail = src.find(_PLOTLY_TAIL) + len(_PLOTLY_TAIL)
    # the CommonJS wrapper's parameters renamed as the UMD bundle expects them
    rest = src[tail:].replace(_PLOTLY_USE, "__curvlabPlotlyOf.")
    rest = rest.replace(_MD_DEF, _MD_DEF + _DISPATCH + _NEEDS_FULL.format(
        types=json.dumps(list(PARTIAL_TYPES)), name=json.dumps(FULL_NAME)))
    rest = rest.replace(_VIEW_RENDER, "async " + _VIEW_RENDER
                        + "await __curvlabPlotlyFor(mm,ne);")
    return (src[:head] + "var LQ=fbe((exports,module)=>{\n" + partial + "\n});"
            + rest)


def full_module(full=None):
    """The whole plotly.js (`full`, default the installed plotly.min.js) as a module whose default
    export is Plotly; the page's global `Plotly` (the partial one) is left as it was."""
    full = plotly_full_source() if full is None else full
    return ("const __saved = globalThis.Plotly;\nconst module = { exports: {} };\n" + full
            + "\n;globalThis.Plotly = __saved;\nexport default module.exports;\n")
