"""The landing page as a static page: no kernel per visitor.

Voila starts a kernel for every page it renders, even a notebook of markdown cells only; when a
class opens the landing page at once, that is one kernel start per student (~1–2 s of CPU and
~60 MB each, on the cores that are about to build their apps). The landing page (apps/index.ipynb)
is markdown only, so standalone Voila (`curvlab_jupyter.voila`, what `./run apps` runs) serves it
from this handler at its usual address, {base_url}voila/render/index.ipynb, and so does Voila as
a server extension (JupyterHub, Binder, JupyterLab: curvlab_jupyter's extension, at
{base_url}voila/render/apps/index.ipynb, the hub's default URL): the notebook's
markdown cells rendered once (mistune, which nbconvert brings), their attachments inline as data
URIs, links left as written (relative, so `landscape.ipynb` opens /voila/render/landscape.ipynb).
The page is rebuilt when the notebook file changes. A landing notebook with a code cell is not
static: Voila renders it as before (`is_static`, decided when the server starts; a code cell
added later is refused with a message to restart the server).
"""

import base64
import html
import json
import re
from pathlib import Path

from tornado import web

_ATTACHMENT = re.compile(r"\(attachment:([^)\s]+)\)")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ margin: 0; background: #fff; color: rgba(0, 0, 0, 0.87);
        font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial,
              sans-serif; }}
main {{ max-width: 1100px; margin: 0 auto; padding: 16px 24px 48px; }}
h1 {{ font-size: 2em; margin: 0.6em 0 0.4em; }}
h3 {{ font-size: 1.35em; margin: 1.6em 0 0.3em; }}
a {{ color: #0d47a1; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
code {{ background: #f3f3f3; padding: 0 3px; border-radius: 2px; }}
</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""


def _cells(path):
    return json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])


def _source(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def is_static(path):
    """Whether notebook `path` is markdown (and raw) cells only, so it can be served with no
    kernel."""
    return all(c.get("cell_type") != "code" for c in _cells(path))


def render(path):
    """The HTML page of notebook `path`'s markdown cells, attachments inline."""
    import mistune
    parts, title = [], Path(path).stem
    for cell in _cells(path):
        if cell.get("cell_type") != "markdown":
            continue
        files = cell.get("attachments", {})

        def inline(m, files=files):
            found = files.get(m.group(1))
            if not found:
                return m.group(0)
            mime, data = next(iter(found.items()))
            data = "".join(data) if isinstance(data, list) else data
            data = "".join(data.split())                # base64 may come in wrapped lines
            base64.b64decode(data, validate=True)       # a broken attachment fails here
            return f"(data:{mime};base64,{data})"

        text = _ATTACHMENT.sub(inline, _source(cell))
        heading = re.match(r"#\s+(.+)", text)
        if heading and title == Path(path).stem:
            title = heading.group(1).strip()
        parts.append(mistune.html(text))
    return PAGE.format(title=html.escape(title), body="\n".join(parts))


def routes(base_url, path, rel, log):
    """[(route, LandingHandler, its arguments)] serving the notebook `path` at
    {base_url}voila/render/`rel` with no kernel when it is markdown only; [] when it is missing
    or has code (Voila renders it, with a kernel) or is not a notebook's JSON (Voila's to
    report, `log` says so)."""
    from jupyter_server.utils import url_path_join
    path = Path(path)
    if not path.is_file():
        return []
    try:
        static = is_static(path)
    except ValueError as e:
        log.warning("curvlab: %s is not a readable notebook (%s); Voila renders it", path, e)
        return []
    page = url_path_join(base_url, "voila/render", rel)
    return [(re.escape(page), LandingHandler, {"path": path})] if static else []


class LandingHandler(web.RequestHandler):
    """GET the landing notebook as a static page (`render`), rebuilt when the file changes."""

    def initialize(self, path):
        self.path = Path(path)

    _cache = {}

    def get(self):
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            raise web.HTTPError(404) from None
        key = (str(self.path), stamp)
        if key not in LandingHandler._cache:
            if not is_static(self.path):         # a code cell added while the server runs
                raise web.HTTPError(503, reason="the landing notebook has code cells now; "
                                    "restart the server (./run apps, or your Jupyter server) "
                                    "so that Voila renders it")
            LandingHandler._cache.clear()
            LandingHandler._cache[key] = render(self.path)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.write(LandingHandler._cache[key])
