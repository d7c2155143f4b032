"""Headless: the patches of plotly's widget bundle (curvlab/dashboards/bundle.py) apply to the
pinned plotly's bundle, each does what it says, and they stand or fall together behind one gate."""

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
    # every other figure's module: a few lines waiting on that slot, no plotly.js
    assert bundle.SMALL_ESM == f"const factory = await {bundle.SLOT}.p;\nexport default factory;\n"
    assert len(bundle.SMALL_ESM) < 200 and len(patched) > 1_000_000
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
