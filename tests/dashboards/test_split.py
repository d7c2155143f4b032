"""Headless: the split of plotly's patched widget bundle (curvlab_jupyter.plotly_widget.split)
applies to the pinned plotly's bundle, puts the vendored partial plotly.js in place of the
whole one and leaves the widget code whole; the vendored file is what tools/plotly_build builds; it refuses (warned, None) what it does not know; and
the server sends the split bundle, the whole plotly.js as a module, and the whole bundle on
`?whole` (tests/browser/test_first_plot.py draws with them)."""

import gzip
import hashlib
import json
import re
import shutil
import subprocess

import pytest

from curvlab_jupyter import plotly_widget as pw


# sha256 of vendor/plotly-curvlab-4.1.1.min.js as tools/plotly_build wrote it
VENDORED_SHA256 = "49aa46cf8499ca1d91ea90e47a743646be72673d89ab0482cd07303c1e3e7c8a"


@pytest.fixture(scope="module")
def whole():
    return pw.patch()


@pytest.fixture(scope="module")
def partial():
    return pw.PARTIAL_FILE.read_text()


@pytest.fixture(scope="module")
def split(whole):
    return pw.split(whole)


def test_the_vendored_file_is_the_partial_bundle_of_the_version_plotly_ships():
    raw = pw.PARTIAL_FILE.read_bytes()
    # the file's own hash, taken when built (tools/plotly_build; rebuilt in the test below)
    assert hashlib.sha256(raw).hexdigest() == VENDORED_SHA256
    assert raw.startswith(b"/**\n* plotly.js (curvlab: scatter, contour, heatmap - minified) "
                          b"v4.1.1\n")
    assert pw.plotly_full_source().startswith("/**\n* plotly.js v4.1.1\n")
    assert (pw.PARTIAL_FILE.parent / "LICENSE.plotly.js").read_text().startswith("MIT License")


def test_the_vendored_file_is_what_tools_plotly_build_builds(tmp_path):
    """Rebuilt from the pinned npm packages (package-lock.json) in a scratch copy: the same bytes
    as the committed file."""
    src = pw.PARTIAL_FILE.parents[2] / "tools" / "plotly_build"
    for name in ("package.json", "package-lock.json", "build.mjs"):
        shutil.copy(src / name, tmp_path / name)
    npm = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
    subprocess.run(npm, cwd=tmp_path, check=True, capture_output=True, timeout=600)
    out = tmp_path / "out.js"
    subprocess.run(["node", "build.mjs", str(out)], cwd=tmp_path, check=True,
                   capture_output=True, timeout=300)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == VENDORED_SHA256


def test_the_split_bundle_carries_the_partial_plotly_js_and_the_whole_widget_code(
        whole, partial, split):
    assert split is not None and 1_200_000 < len(split) < 1_400_000 < 4_900_000 < len(whole)
    assert split.count(partial) == 1
    # the embedded plotly.js is gone (its version line, once in each plotly.js; d3 has its own)
    assert whole.count('.version="4.1.1"') == 1 and split.count('.version="4.1.1"') == 1
    assert split.index('.version="4.1.1"') > split.index(pw.PARTIAL_FILE.read_text()[:200])
    # before plotly.js (esbuild's helpers) and after it (lodash, the patched widget code) all
    # is there: only plotly.js's calls redirected, the choice of plotly.js inserted after its
    # import, and render made to wait for that choice
    head, end = whole.index(pw._PLOTLY_HEAD), "return window.Plotly=Q,Q})});"
    tail = whole[whole.index(end) + len(end):]
    assert tail.count("Md.default.") == 11 and "Md.default." not in split
    at = split.index("var Md=dbe(LQ());") + len("var Md=dbe(LQ());")
    upto = split.index("window.PlotlyConfig=", at)
    chosen = split[at:upto]
    assert chosen.startswith("var __curvlabPlotlyOf=new Proxy(") and "__curvlabPlotlyFor" in chosen
    render = "render({model:mm,el:ne}){"
    back = (split[:at] + split[upto:]).replace("__curvlabPlotlyOf.", "Md.default.").replace(
        "async " + render + "await __curvlabPlotlyFor(mm,ne);", render)
    assert back == whole[:head] + "var LQ=fbe((exports,module)=>{\n" + partial + "\n});" + tail
    # every patch is still in (the view's render, the relayout count, the slot's publication)
    for edits in pw.PATCHES.values():
        for _, new in edits:
            assert back.count(new) == 1
    # the partial bundle's types, and nothing else, stay with the partial plotly.js
    types = re.search(r"__curvlabPartial=new Set\((\[[^]]*\])\)", split).group(1)
    assert sorted(json.loads(types)) == sorted(pw.PARTIAL_TYPES) == ["contour", "heatmap",
                                                                     "scatter"]
    assert f'new URL("{pw.FULL_NAME}",import.meta.url)' in split


def test_a_bundle_or_a_plotly_js_the_split_does_not_know_is_sent_whole_with_a_warning(
        whole, partial, monkeypatch):
    full = pw.plotly_full_source()
    with pytest.warns(RuntimeWarning, match="'plotly.min.js': '4.2.0'.*must all be 4.1.1"):
        assert pw.split(whole, partial, full.replace("v4.1.1", "v4.2.0", 1)) is None
    with pytest.warns(RuntimeWarning, match="'partial bundle': '4.0.0'"):
        assert pw.split(whole, partial.replace("v4.1.1", "v4.0.0", 1), full) is None
    with pytest.warns(RuntimeWarning, match="'widget bundle': '4.1.2'"):
        assert pw.split(whole.replace('.version="4.1.1"', '.version="4.1.2"'), partial,
                        full) is None
    for missing in ("var LQ=fbe((DQ,hA)=>{", "return window.Plotly=Q,Q})});",
                    "var Md=dbe(LQ());", "render({model:mm,el:ne}){"):
        with pytest.warns(RuntimeWarning, match="(not laid out as the one curvlab splits"
                                                "|'widget bundle': None)"):
            assert pw.split(whole.replace(missing, "x"), partial, full) is None
    with pytest.warns(RuntimeWarning, match="not laid out"):          # a 12th call of plotly.js
        assert pw.split(whole + "Md.default.purge(x);", partial, full) is None
    monkeypatch.setattr(pw, "PARTIAL_FILE", pw.PARTIAL_FILE.with_name("gone.js"))
    with pytest.warns(RuntimeWarning, match="gone.js is missing"):
        assert pw.split(whole) is None


@pytest.mark.skipif(shutil.which("node") is None, reason="node checks the modules' syntax")
@pytest.mark.parametrize("what", ["split", "full"])
def test_the_split_bundle_and_the_whole_plotly_js_are_valid_modules(tmp_path, split, what):
    path = tmp_path / f"{what}.mjs"
    path.write_text(split if what == "split" else pw.full_module())
    out = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_server_sends_the_split_bundle_the_whole_plotly_js_and_the_whole_bundle(
        whole, split):
    import curvlab_jupyter
    found = curvlab_jupyter._bundles()
    assert set(found) == {"widget", "full", "whole"}
    for what, text in (("widget", split), ("whole", whole), ("full", pw.full_module())):
        raw, packed, etag = found[what]
        assert raw == text.encode() and gzip.decompress(packed) == raw, what
        assert etag == hashlib.sha256(raw).hexdigest()[:16]
    assert len({e for _, _, e in found.values()}) == 3
