"""The landing page is served with no kernel (curvlab_jupyter.landing): its markdown rendered as a
static page at Voila's usual address, every app linked with its picture inline; a landing
notebook with code is Voila's to render, with a kernel as before."""

import base64
import re
import shutil
import time
import urllib.error
import urllib.request

import nbformat
import psutil
import pytest

from curvlab.dashboards import APPS
from curvlab_jupyter import landing
from tests.browser.conftest import ROOT, serve_voila

INDEX = ROOT / "apps" / "index.ipynb"


def test_the_landing_notebook_renders_with_every_app_linked_and_its_picture_inline():
    assert landing.is_static(INDEX)
    page = landing.render(INDEX)
    assert "<title>curvlab — a curvature laboratory</title>" in page
    for name in APPS:
        assert f'<h3><a href="{name}.ipynb">{name}</a></h3>' in page, name
        img = re.search(rf'<a href="{name}.ipynb"><img src="data:image/png;base64,([^"]+)" '
                        rf'alt="{name} app" />', page)
        assert img, name
        assert base64.b64decode(img.group(1)).startswith(b"\x89PNG\r\n\x1a\n"), name
    assert "attachment:" not in page and "http" not in page      # nothing off the machine
    assert "<strong>landscape</strong>" in page                   # markdown, not source text


def test_attachments_in_wrapped_base64_lines_are_inlined(tmp_path):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(60))).decode()
    wrapped = "\n".join(png[i:i + 20] for i in range(0, len(png), 20))
    cell = nbformat.v4.new_markdown_cell("# Hi\n\n![pic](attachment:a.png)")
    cell.attachments = {"a.png": {"image/png": wrapped}}
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "index.ipynb")
    page = landing.render(tmp_path / "index.ipynb")
    assert f'<img src="data:image/png;base64,{png}" alt="pic" />' in page
    assert "<title>Hi</title>" in page


def _kernels(server):
    """How many kernel processes (ipykernel) the server has started."""
    return sum("ipykernel" in " ".join(p.cmdline()) for p in server.children())


def _server(url):
    """The Voila process serving `url`."""
    port = url.rsplit(":", 1)[1]
    for p in psutil.process_iter(["cmdline"]):
        args = " ".join(p.info["cmdline"] or ())
        if "curvlab_jupyter.voila" in args and f"--port={port}" in args:
            return p
    raise AssertionError("the server's process was not found")


@pytest.mark.parametrize("with_code", [False, True])
def test_a_markdown_landing_page_starts_no_kernel_and_one_with_code_does(tmp_path, with_code):
    shutil.copy(INDEX, tmp_path / "index.ipynb")
    if with_code:
        nb = nbformat.read(tmp_path / "index.ipynb", as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell("print('from a kernel')"))
        nbformat.write(nb, tmp_path / "index.ipynb")
    with open(tmp_path / "voila.log", "w") as log, serve_voila(tmp_path, log) as url:
        server = _server(url)
        assert _kernels(server) == 0
        for _ in range(3):                    # three visitors
            with urllib.request.urlopen(url + "/", timeout=60) as reply:   # the root redirects
                assert reply.url == url + "/voila/render/index.ipynb"
                page = reply.read().decode()
            assert 'href="damping.ipynb"' in page
        if not with_code:
            assert "jupyter-config-data" not in page                       # not Voila's page
            time.sleep(1)
            assert _kernels(server) == 0
            # a code cell added while the server runs: refused with what to do, no kernel
            nb = nbformat.read(tmp_path / "index.ipynb", as_version=4)
            nb.cells.append(nbformat.v4.new_code_cell("print('late')"))
            nbformat.write(nb, tmp_path / "index.ipynb")
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(url + "/voila/render/index.ipynb", timeout=60)
            assert e.value.code == 503 and "restart the server" in e.value.reason
            assert _kernels(server) == 0
        else:
            for _ in range(100):
                if _kernels(server):
                    break
                time.sleep(0.2)
            assert _kernels(server) >= 1
