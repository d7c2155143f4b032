"""Figures at the page's width, in a real browser: two panels to a row on a laptop, one on a
narrow window, and every plot follows its panel when the window is resized."""

import pytest

from .drive import PLOTS, open_app

# Each panel's box and its plot's drawn width (the main SVG), in page pixels.
BOXES = ("() => Array.from(document.querySelectorAll('.curvlab-panel')).map(e => {"
         " const r = e.getBoundingClientRect(), svg = e.querySelector('.main-svg');"
         " return {x: r.x, y: r.y, w: r.width,"
         " plot: svg ? svg.getBoundingClientRect().width : null}; })")
# every panel's plot as wide as its panel (or not drawn)
FITTED = "b => b.plot === null || Math.abs(b.plot - b.w) <= 2"


def rows(boxes):
    """The panels grouped by their top edge: one list of boxes per row, top to bottom."""
    out = {}
    for b in boxes:
        out.setdefault(round(b["y"]), []).append(b)
    return [out[y] for y in sorted(out)]


@pytest.mark.parametrize("app", ["damping", "products"])
def test_figures_take_two_columns_on_a_laptop_and_one_on_a_narrow_window(page, voila_url, app):
    open_app(page, voila_url, app)
    page.wait_for_function(f"() => ({BOXES})().every({FITTED})", timeout=30_000)
    wide = rows(page.evaluate(BOXES))
    page_width = page.viewport_size["width"]
    assert len(wide[0]) == 2, wide                                # two side by side
    assert all(b["w"] > 0.45 * page_width for r in wide for b in r), wide   # each about half
    assert sum(b["w"] for b in wide[0]) > 0.9 * page_width, wide  # no third of the width unused

    page.set_viewport_size({"width": 800, "height": 1600})        # a narrow window: one column
    page.wait_for_function(f"() => {{ const b = ({BOXES})(); return b.every(x => x.w < 800) &&"
                           f" b.every({FITTED}); }}", timeout=30_000)
    narrow = rows(page.evaluate(BOXES))
    assert all(len(r) == 1 for r in narrow), narrow
    assert all(b["w"] > 0.9 * 800 for r in narrow for b in r), narrow


# Every visible label, button, readout and table cell whose text is wider than its box, and every
# menu whose chosen option is wider than the menu (measured in the menu's font).
CUT = """() => {
  const out = [], shown = e => e.offsetParent !== null;
  const boxes = '.widget-label, .widget-label-basic, .widget-checkbox label, .widget-button, ' +
                '.widget-toggle-button, .widget-readout, .widget-html-content th, ' +
                '.widget-html-content td';
  for (const e of document.querySelectorAll(boxes))
    if (shown(e) && e.scrollWidth > e.clientWidth + 1) out.push(e.textContent.trim());
  const ctx = document.createElement('canvas').getContext('2d');
  for (const s of document.querySelectorAll('select')) {
    if (!shown(s)) continue;
    const st = getComputedStyle(s);
    ctx.font = `${st.fontStyle} ${st.fontWeight} ${st.fontSize} ${st.fontFamily}`;
    const room = s.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
    const texts = s.multiple ? Array.from(s.options, o => o.text)
                             : [s.options[s.selectedIndex]?.text || ''];
    for (const t of texts) if (ctx.measureText(t).width > room + 1) out.push('menu: ' + t);
  }
  return out; }"""


@pytest.mark.parametrize("app", PLOTS)
def test_no_label_menu_or_table_cell_is_cut(page, voila_url, app):
    open_app(page, voila_url, app)
    assert page.evaluate(CUT) == []


def test_hiding_and_showing_a_figure_raises_no_page_error_and_it_comes_back_at_its_width(
        page, voila_url):
    # trajectories' network mode hides the paths' panel (display: none), the 2-D mode shows it
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    open_app(page, voila_url, "trajectories")
    page.get_by_role("button", name="network").click()
    page.wait_for_function("() => Array.from(document.querySelectorAll('.curvlab-panel'))"
                           ".some(p => p.offsetParent === null)", timeout=60_000)
    page.get_by_role("button", name="2-D functions").click()
    page.wait_for_function(f"() => ({BOXES})().every(b => b.plot === null"
                           " || (b.w > 0 && Math.abs(b.plot - b.w) <= 2))", timeout=60_000)
    page.wait_for_timeout(500)
    assert errors == []
