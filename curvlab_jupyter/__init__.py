"""curvlab's Jupyter server extension: serves plotly's patched widget bundle over HTTP.

Every curvlab FigureWidget's front-end module is a few lines (curvlab.dashboards.bundle) that
import plotly's widget code, patched (plotly_widget.patch), from the server that serves the page:

    GET {base_url}curvlab/plotly-widget.js

so the browser fetches it once per page (and revalidates its cached copy by ETag), instead of the
kernel sending its 5 MB through the widget channel with each figure. The same handler serves
every route: Voila as a server extension and JupyterLab (`jupyter server`, JupyterHub's single
user servers, Binder: enabled by etc/jupyter/jupyter_server_config.d/curvlab_jupyter.json, which
`pip install` puts in the environment), and standalone Voila (`./run apps`: curvlab_jupyter.voila).

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


@functools.lru_cache(maxsize=1)
def _bundle():
    """(text, gzip-compressed bytes, ETag) of the patched bundle, or None when the installed
    plotly's bundle is not the one curvlab adapts. Built once per server, ~0.9 s on a loaded
    2-core machine, mostly compressing (4.96 MB → 1.51 MB for a remote student)."""
    from .plotly_widget import patch
    text = patch()
    if text is None:
        return None
    raw = text.encode()
    return raw, gzip.compress(raw, compresslevel=6, mtime=0), hashlib.sha256(raw).hexdigest()[:16]


class PlotlyWidgetHandler(web.RequestHandler):
    """GET the patched bundle as a JavaScript module. Not behind the server's login: it is
    plotly's public code, like Voila's and Lab's own static files. `Cache-Control: no-cache`
    with an ETag: the browser keeps its copy and asks whether it is current (a 304 on loopback
    costs ~1 ms), so a plotly upgrade reaches every browser at once."""

    def _gzip(self):
        return "gzip" in self.request.headers.get("Accept-Encoding", "")

    def compute_etag(self):             # one per encoding: a cache must not mix them up
        found = _bundle()
        return f'"{found[2]}{"-gz" if self._gzip() else ""}"' if found else None

    def get(self):
        found = _bundle()
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
    """The tornado handlers this extension adds under `base_url`; the bundle is prepared in a
    thread meanwhile, so the first visitor does not wait for it."""
    from jupyter_server.utils import url_path_join
    threading.Thread(target=_bundle, name="curvlab-plotly-bundle", daemon=True).start()
    return [(url_path_join(base_url, URL_PATH), PlotlyWidgetHandler)]


def _jupyter_server_extension_points():
    return [{"module": "curvlab_jupyter"}]


def _load_jupyter_server_extension(serverapp):
    serverapp.web_app.add_handlers(".*$", handlers(serverapp.web_app.settings["base_url"]))
    from .guard import install  # a kernel websocket frame that does not parse closes its socket
    install(serverapp)
    serverapp.log.info("curvlab: plotly's widget code at %s", serverapp.base_url + URL_PATH)
