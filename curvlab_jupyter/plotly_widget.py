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

This module imports only the standard library (plotly when called): the Jupyter server loads it
(curvlab_jupyter serves the patched bundle) without importing curvlab's numerics.
"""

import pathlib
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
