"""The front-end module of a curvlab FigureWidget: where the page gets plotly's widget code.

plotly's FigureWidget is an anywidget whose module (~5 MB: all of plotly.js) travels through the
widget channel with every figure, and is evaluated once per figure. curvlab patches that bundle
(curvlab_jupyter.plotly_widget: the several-figure freeze, views that follow their size, cheap
relayouts; all or nothing behind one version gate, `patch`) and gets it to the page once:

- "server" (the default): every figure's module is `LOADER_ESM`, under 2 kB, that imports
  the patched bundle from the Jupyter server serving the page, at
  {base_url}curvlab/plotly-widget.js (curvlab_jupyter, installed with curvlab: a server extension
  for JupyterLab, Voila as an extension, JupyterHub and Binder; `./run apps` runs Voila with the
  same handler). The base URL is the page's own (`jupyter-config-data`, which Voila and
  JupyterLab pages carry), so it works under a prefix such as JupyterHub's /user/<name>/. The
  browser's module map evaluates the bundle once per page whatever the number of figures, and
  its cache keeps it between visits. A server without the extension: the figure shows an error
  naming the two fixes (enable the extension, or "kernel" below).
- "kernel" (CURVLAB_PLOTLY_BUNDLE=kernel in the kernel's environment, for front ends served by
  no Jupyter server, e.g. an editor's notebook view): the first figure of a kernel carries the
  patched bundle (`FULL_ESM`: 5 MB through the widget channel, once per kernel), every other
  figure waits on the global slot it resolves (`SMALL_ESM`; see curvlab.dashboards.figure).

With an unadapted plotly (`PATCHED` None, warned) both are None and FigureWidget is plotly's own.
Cost in a kernel at import: "server", checking plotly's bundle (`adapted`, ~10 ms, nothing kept);
"kernel", reading and patching it (~0.05 s, 28 MB kept: `PATCHED`, a str).
"""

import mmap
import os
import pathlib

from curvlab_jupyter import URL_PATH
from curvlab_jupyter.plotly_widget import GLOBAL, PATCHES, SLOT, patch, plotly_source

__all__ = ["GLOBAL", "PATCHES", "SLOT", "patch", "plotly_source", "PATCHED", "MODE",
           "LOADER_ESM", "WAITER_ESM", "FULL_ESM", "SMALL_ESM", "mode", "adapted"]

MODES = ("server", "kernel")


def mode(env=os.environ):
    """Where the page gets plotly's widget code: CURVLAB_PLOTLY_BUNDLE, "server" by default."""
    value = env.get("CURVLAB_PLOTLY_BUNDLE", "server")
    if value not in MODES:
        raise ValueError(f"CURVLAB_PLOTLY_BUNDLE={value!r}: write 'server' (plotly's widget code "
                         "from the Jupyter server, the default) or 'kernel' (through the widget "
                         "channel, once per kernel)")
    return value


# Every figure's module when the server serves the bundle. anywidget (0.11) gives a model ~2 s
# from its creation to import this module, call its default export and run `initialize`; past
# that it logs "Failed to initialize model." and drops the model's messages (after a page reload
# whole dashboards then show "model not found"). Only `render` may wait. So the module finishes
# at once: it starts importing the bundle and exports a factory whose `initialize` only records
# the model's changes until plotly's definition arrives; then plotly's `initialize` runs and
# hears those changes replayed in order, each with the model's values as they were then (its
# handlers apply each `_py2js_*` message to `_widget_data`/`_widget_layout`, which Python may
# replace in between). `render` waits for that. A failed import says what to do, in the
# figure's place and in the console.
LOADER_ESM = f"""\
const config = document.getElementById("jupyter-config-data");
const base = config ? JSON.parse(config.textContent).baseUrl || "/" : "/";
const url = new URL(base.replace(/\\/?$/, "/") + {URL_PATH!r}, location.href).href;
const def = import(url).then(() => {SLOT}.p, e => {{
  throw new Error(`curvlab: plotly's widget code did not load from ${{url}} (${{e}}). The ` +
    "Jupyter server needs curvlab's extension (jupyter server extension enable " +
    "curvlab_jupyter), or set CURVLAB_PLOTLY_BUNDLE=kernel where the kernel runs.");
}});
def.catch(() => {{}});
export default () => {{
  let ok, no;
  const real = new Promise((y, n) => {{ ok = y; no = n; }});
  return {{
    initialize({{ model, signal, experimental }}) {{
      const was = {{}}, log = [], on = [];
      const rec = (ev, m, v) => {{
        if (!ev.startsWith("change:")) return;
        const k = ev.slice(7);
        if (!(k in was)) was[k] = m.previous(k);
        log.push([k, v, m]);
      }};
      model.on("all", rec);
      const stop = () => model.off("all", rec);
      def.then(f => {{
        stop();
        if (signal.aborted) return;
        const w = f();
        let at = null;
        w.initialize({{ signal, experimental, model: {{ ...model,
          get: k => (at && k in at ? at[k] : model.get(k)),
          on: (n, cb) => {{ on.push([n, cb]); model.on(n, cb); }} }} }});
        at = was;
        for (const [k, v, m] of log) {{
          at[k] = v;
          for (const [n, cb] of on) if (n === "change:" + k) cb(m, v, {{}});
        }}
        at = null;
        return w;
      }}, e => {{ stop(); throw e; }}).then(ok, no);
    }},
    async render(view) {{
      try {{
        return (await real).render(view);
      }} catch (e) {{
        view.el.textContent = e.message;
        throw e;
      }}
    }},
  }};
}};
"""

# kernel mode: every figure but the first waits on the slot the first one's bundle resolves
WAITER_ESM = f"const factory = await {SLOT}.p;\nexport default factory;\n"


def _count(data, needle):
    """How many times bytes `needle` occur in buffer `data` (not overlapping)."""
    n, at = 0, data.find(needle)
    while at >= 0:
        n, at = n + 1, data.find(needle, at + len(needle))
    return n


def adapted(path=None):
    """Whether plotly's widget bundle (file `path`, default the installed plotly's) is the one
    curvlab adapts: `patch`'s gate
    (each patch's text found exactly once), without making the patched text. The file is mapped,
    not read (UTF-8 is self-synchronizing: a text's count in the file's bytes is its count in
    the file's text), so no copy of it passes through the kernel's heap (the text as a str, 4
    bytes per character, and its patched copies left ~20 MB in the heap once freed). A bundle
    that fails the gate: False, with `patch`'s warning. Cost: a pass over the file per patch
    text, ~10 ms."""
    if path is None:
        import plotly
        path = pathlib.Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if all(_count(data, old.encode()) == 1 for edits in PATCHES.values() for old, _ in edits):
            return True
    # patch's own verdict (None, with the warning that says what to do)
    return patch(pathlib.Path(path).read_text()) is not None


MODE = mode()
# the module of the figure that carries plotly.js (None: plotly's own), and of every other one
if MODE == "server":
    if adapted():
        FULL_ESM = SMALL_ESM = LOADER_ESM
        # PATCHED is made on demand (__getattr__): the server serves the text, and a kernel
        # keeping it would hold ~28 MB (a str with non-ASCII characters, 4 bytes each)
    else:
        FULL_ESM = SMALL_ESM = PATCHED = None
else:
    PATCHED = patch()                   # the patched bundle's text, or None
    FULL_ESM, SMALL_ESM = (None, None) if PATCHED is None else (PATCHED, WAITER_ESM)

def __getattr__(name):
    if name == "PATCHED":
        return patch()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
