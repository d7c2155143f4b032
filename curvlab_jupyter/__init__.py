"""curvlab's Jupyter server extension: serves plotly's patched widget bundle over HTTP.

Every curvlab FigureWidget's front-end module is a few lines (curvlab.dashboards.bundle) that
import plotly's widget code, patched (plotly_widget.patch), from the server that serves the page:

    GET {base_url}curvlab/plotly-widget.js

so the browser fetches it once per page (and revalidates its cached copy by ETag), instead of the
kernel sending its 5 MB through the widget channel with each figure. That module carries a
partial plotly.js, the trace types curvlab's 2-D figures draw (plotly_widget.split: 1.3 MB,
evaluated in a fraction of the whole one's time, which a visitor's first plot waits for); a
figure with another trace type (a 3-D surface) imports the whole plotly.js from
{base_url}curvlab/plotly-full.js when it is first shown.
The same handler serves every route: Voila as a server extension and JupyterLab (`jupyter
server`, JupyterHub's single user servers, Binder: enabled by
etc/jupyter/jupyter_server_config.d/curvlab_jupyter.json, which `pip install` puts in the
environment), and standalone Voila (`./run apps`: curvlab_jupyter.voila).

A package of its own, outside `curvlab`, because a server extension is imported by the Jupyter
server itself: `import curvlab` takes ~2 s and ~1000 modules (the numerics and every dashboard),
which each user's server would hold; this package needs the standard library, tornado and, on the
first request, plotly (~0.04 s).
"""

import functools
import gzip
import hashlib
import threading

from tornado import web

URL_PATH = "curvlab/plotly-widget.js"     # under the server's base URL
FULL_PATH = "curvlab/plotly-full.js"      # the whole plotly.js, for a figure that needs it


def _packed(text):
    raw = text.encode()
    return raw, gzip.compress(raw, compresslevel=6, mtime=0), hashlib.sha256(raw).hexdigest()[:16]


_BUILDING = threading.Lock()      # one build: a visitor during the start-up build waits for it


def _bundles():
    """`_build`'s result, built once (the start-up thread or the first request; others wait)."""
    with _BUILDING:
        return _build()


@functools.lru_cache(maxsize=1)
def _build():
    """{what: (text, gzip-compressed bytes, ETag)}: "widget", the module every figure imports
    (plotly_widget.split: a partial plotly.js, 1.3 MB), "full", the whole
    plotly.js as a module (what a figure of another trace type imports when it first renders),
    and "whole", the patched bundle with all of plotly.js in it (4.96 MB; `?whole` on the
    widget URL, for comparing; also the widget itself when the split does not apply, warned).
    Empty when the installed plotly's bundle is not the one curvlab adapts. Built once per
    server, ~1.5 s on a loaded 2-core machine, mostly compressing."""
    from .plotly_widget import full_module, patch, split
    whole = patch()
    if whole is None:
        return {}
    widget = split(whole)
    found = {"whole": _packed(whole), "widget": _packed(widget or whole)}
    if widget is not None:
        found["full"] = _packed(full_module())
    return found


class PlotlyWidgetHandler(web.RequestHandler):
    """GET the patched bundle (or, on FULL_PATH, the whole plotly.js) as a JavaScript module. Not
    behind the server's login: it is plotly's public code, like Voila's and Lab's own static
    files. `Cache-Control: no-cache` with an ETag: the browser keeps its copy and asks whether
    it is current (a 304 on loopback costs ~1 ms), so a plotly upgrade reaches every browser at
    once."""

    def initialize(self, what):
        self.what = what

    def _gzip(self):
        return "gzip" in self.request.headers.get("Accept-Encoding", "")

    def _found(self):
        what = "whole" if self.what == "widget" and "whole" in self.request.arguments else self.what
        return _bundles().get(what)

    def compute_etag(self):             # one per encoding: a cache must not mix them up
        found = self._found()
        return f'"{found[2]}{"-gz" if self._gzip() else ""}"' if found else None

    def get(self):
        found = self._found()
        if found is None:
            raise web.HTTPError(404, reason="the installed plotly's widget bundle is not the one "
                                "curvlab adapts: install plotly>=7.1,<7.2")
        raw, packed, _ = found
        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Vary", "Accept-Encoding")
        if self._gzip():
            self.set_header("Content-Encoding", "gzip")
            self.write(packed)
        else:
            self.write(raw)


def handlers(base_url):
    """The tornado handlers this extension adds under `base_url`; the bundles are prepared in a
    thread meanwhile, so the first visitor does not wait for them."""
    from jupyter_server.utils import url_path_join
    threading.Thread(target=_bundles, name="curvlab-plotly-bundle", daemon=True).start()
    return [(url_path_join(base_url, URL_PATH), PlotlyWidgetHandler, {"what": "widget"}),
            (url_path_join(base_url, FULL_PATH), PlotlyWidgetHandler, {"what": "full"})]


def _jupyter_server_extension_points():
    return [{"module": "curvlab_jupyter"}]


# The landing notebook, under the server's root: JupyterHub's and Binder's default URL is
# {base_url}voila/render/apps/index.ipynb (deploy/).
LANDING = "apps/index.ipynb"


def _load_jupyter_server_extension(serverapp):
    from pathlib import Path

    from . import landing
    base_url = serverapp.web_app.settings["base_url"]
    # the landing page with no kernel per visit (curvlab_jupyter.landing); these routes are
    # tried before Voila's /voila/render/(.*), whose extension loads after this one (by name)
    page = landing.routes(base_url, Path(serverapp.root_dir) / LANDING, LANDING, serverapp.log)
    serverapp.web_app.add_handlers(".*$", page + handlers(base_url))
    from .guard import install  # a kernel websocket frame that does not parse closes its socket
    install(serverapp)
    serverapp.log.info("curvlab: plotly's widget code at %s", serverapp.base_url + URL_PATH)
