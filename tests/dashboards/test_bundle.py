"""Headless: the patches of plotly's widget bundle (curvlab/dashboards/bundle.py) apply to the
pinned plotly's bundle, each does what it says, and they stand or fall together behind one gate."""

import json
import shutil
import subprocess

import pytest

from curvlab.dashboards import bundle


@pytest.fixture(scope="module")
def src():
    return bundle.plotly_source()


def test_every_patch_applies_to_the_pinned_plotly_bundle(src):
    patched = bundle.patch(src)
    assert patched is not None and patched == bundle.PATCHED
    assert set(bundle.PATCHES) == {"view", "relayout", "freeze"}
    for name, edits in bundle.PATCHES.items():
        for old, new in edits:
            assert src.count(old) == 1, name
            assert patched.count(new) == 1, name            # what the patch inserts is there
            # and what it replaces is gone (kept only inside an insertion that extends it)
            assert patched.count(old) == new.count(old), name


def test_the_freeze_fix_one_figure_carries_plotly_js_the_others_wait_on_the_global_slot(src):
    patched = bundle.PATCHED
    publish = f"{bundle.SLOT}.r(j4t);"                      # the widget definition, published
    assert publish not in src and patched.count(publish) == 1
    assert patched.index(publish) > patched.index("export{TD as FigureModel,MD as FigureView")
    # a figure's module without plotly.js: a few lines waiting on that slot (after importing the
    # bundle from the server, LOADER_ESM, or after another figure carried it, WAITER_ESM)
    assert bundle.WAITER_ESM == f"const factory = await {bundle.SLOT}.p;\nexport default factory;\n"
    assert f"import(url).then(() => {bundle.SLOT}.p" in bundle.LOADER_ESM
    assert "await import" not in bundle.LOADER_ESM              # see test_the_loader_* below
    assert len(bundle.WAITER_ESM) < 200 and len(bundle.LOADER_ESM) < 2000
    assert len(patched) > 1_000_000
    assert bundle.GLOBAL in bundle.SLOT and "??=" in bundle.SLOT     # whichever module runs first


def test_the_relayout_fix_counts_pythons_relayouts_instead_of_flagging_them(src):
    patched = bundle.PATCHED
    flagged = "ge._doNotReportToPy=!0,Md.default.relayout(this.el,ne.relayout_data)"
    assert src.count(flagged) == 1 and flagged not in patched
    assert "this.__fromPy=(this.__fromPy||0)+1;try{Md.default.relayout(this.el," in patched
    assert ".finally(()=>{this.__fromPy--})}catch(e){this.__fromPy--;throw e}" in patched
    # the view reports a relayout to Python only while none of Python's is in flight
    assert ('handle_plotly_relayout(ne){if(ne!=null&&!ne.hasOwnProperty("_doNotReportToPy")'
            "&&!(this.__fromPy>0)") in patched


def test_the_view_patch_listens_through_its_own_model_and_follows_its_size(src):
    patched = bundle.PATCHED
    assert "render({el:ne}){let ge=new MD(Q,ne)" in src
    assert "render({el:ne}){let ge=new MD(Q,ne)" not in patched
    assert "render({model:mm,el:ne}){let sh=Object.create(Q);sh.on=(...a)=>mm.on(...a)" in patched
    assert "new ResizeObserver(" in patched and "ro.disconnect()" in patched
    # a width that Python never set, pinned by plotly.js's relayout of a height, is unpinned
    # before the plot resizes to its panel (tests/browser/test_lecture.py shows it in a page)
    resize = '(qs.isNil(ge)||qs.isNil(ge.width))&&Md.default.Plots.resize(ne.el)'
    assert src.count(resize) == 1 and resize not in patched
    assert ('(qs.isNil(ge)||qs.isNil(ge.width))&&(ne.el.layout&&delete ne.el.layout.width,'
            'Md.default.Plots.resize(ne.el))') in patched


@pytest.mark.parametrize("patch", ["view", "relayout", "freeze"])
def test_one_gate_a_bundle_missing_any_patchs_text_is_not_patched_at_all(src, patch):
    old = bundle.PATCHES[patch][0][0]
    with pytest.warns(RuntimeWarning, match="not the one curvlab adapts"):
        assert bundle.patch(src.replace(old, "/* rebuilt by another bundler */")) is None
    with pytest.warns(RuntimeWarning, match="not the one curvlab adapts"):   # or twice
        assert bundle.patch(src + old) is None


@pytest.mark.skipif(shutil.which("node") is None, reason="node checks the module's syntax")
def test_the_patched_bundle_is_still_a_valid_module(tmp_path):
    path = tmp_path / "bundle.mjs"
    path.write_text(bundle.PATCHED)
    out = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


# The loader (LOADER_ESM) in node, against a stand-in for plotly's bundle served at the page's base
# URL: a model of plotly's widget definition whose `initialize` applies each `_py2js_update` to
# `_widget_data` (as plotly's FigureModel does), and a minimal Backbone model (change:<key>
# events, then "all"; `previous`). The bundle's evaluation waits on a gate the harness opens only
# after the loader's module has finished loading and `initialize` has returned: a loader that
# waited for the bundle there would leave node with an unsettled top-level await (exit code 13).
_HARNESS = """\
const BASE = process.argv[2];
class Model {
  constructor(a) { this.a = {...a}; this.prev = {}; this.ev = []; }
  get(k) { return this.a[k]; }
  previous(k) { return this.prev[k]; }
  on(n, cb, ctx) { this.ev.push([n, cb, ctx]); }
  off(n, cb, ctx) {
    this.ev = this.ev.filter(([m, c, x]) => !((n == null || n === m) && (cb == null || cb === c)
                                               && (ctx == null || ctx === x)));
  }
  set(attrs) {
    this.prev = {...this.a};
    for (const [k, v] of Object.entries(attrs)) {
      this.a[k] = v;
      for (const [n, cb] of [...this.ev]) if (n === "change:" + k) cb(this, v, {});
      for (const [n, cb] of [...this.ev]) if (n === "all") cb("change:" + k, this, v, {});
    }
  }
}
const MARK = {};               // anywidget's modelProxy: its listeners carry a context
const proxy = m => ({get: k => m.get(k), set: (k, v) => m.set({[k]: v}),
                     on: (n, cb) => m.on(n, cb, MARK), off: (n, cb) => m.off(n, cb, MARK)});
let open;
globalThis.gate = new Promise(r => { open = r; });
globalThis.document = {getElementById: id => id === "jupyter-config-data"
  ? {textContent: JSON.stringify({baseUrl: BASE})} : null};
globalThis.location = {href: "file:///"};
const loader = await import(new URL("loader.mjs", import.meta.url).href);
const w = loader.default();
const model = new Model({_widget_data: [{y: 0}], _py2js_update: null});
w.initialize({model: proxy(model), signal: new AbortController().signal, experimental: {}});
// Python's messages before plotly's definition arrives: an update, the data replaced (plotly's
// _repr_mimebundle_ does that when the cell displays the figure), another update
model.set({_py2js_update: {y: 1}}); model.set({_py2js_update: null});
const old = model.get("_widget_data");
model.set({_widget_data: [{y: 5, x: 3}]});
model.set({_py2js_update: {x: 7}}); model.set({_py2js_update: null});
open();
const el = {};
let error = null;
try { await w.render({model: proxy(model), el}); } catch (e) { error = e.message; }
const shown = el.shown ?? null;
model.set({_py2js_update: {y: 9}});        // after: plotly's own listener, live
console.log(JSON.stringify({error, text: el.textContent ?? null, shown, old,
  data: model.get("_widget_data"), all: model.ev.filter(([n]) => n === "all").length}));
"""

_FAKE_BUNDLE = """\
await globalThis.gate;
%s.r(() => ({
  initialize({model}) {
    this.m = model;
    model.on("change:_py2js_update", () => {
      const u = model.get("_py2js_update");
      if (u !== null) Object.assign(model.get("_widget_data")[0], u);
    });
  },
  render({el}) { el.shown = JSON.stringify(this.m.get("_widget_data")); return () => {}; },
}));
"""


def _run_loader(tmp_path, serve):
    (tmp_path / "loader.mjs").write_text(bundle.LOADER_ESM)
    (tmp_path / "harness.mjs").write_text(_HARNESS)
    if serve:
        (tmp_path / "curvlab").mkdir()
        (tmp_path / "curvlab" / "plotly-widget.js").write_text(_FAKE_BUNDLE % bundle.SLOT)
    out = subprocess.run(["node", str(tmp_path / "harness.mjs"), f"{tmp_path}/"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="node runs the loader")
def test_the_loader_loads_at_once_and_replays_what_came_before_the_bundle(tmp_path):
    r = _run_loader(tmp_path, serve=True)
    assert r["error"] is None and r["text"] is None
    # by hand: {y: 1} lands on the data Python then replaced, {x: 7} on the new data
    assert r["old"] == [{"y": 1}]
    assert json.loads(r["shown"]) == [{"y": 5, "x": 7}]
    assert r["data"] == [{"y": 9, "x": 7}]          # and later updates reach plotly's listener
    assert r["all"] == 0                             # the recorder is gone


@pytest.mark.skipif(shutil.which("node") is None, reason="node runs the loader")
def test_the_loader_says_what_to_do_in_the_figures_place_when_the_bundle_is_missing(tmp_path):
    r = _run_loader(tmp_path, serve=False)
    assert r["error"] == r["text"] and "plotly's widget code did not load from" in r["error"]
    assert f"{tmp_path}/curvlab/plotly-widget.js" in r["error"]
    assert "jupyter server extension enable curvlab_jupyter" in r["error"]
    assert "CURVLAB_PLOTLY_BUNDLE=kernel" in r["error"]
    assert r["shown"] is None and r["all"] == 0
