"""Profile (not a test): how long headless Chromium's main thread takes to evaluate each
plotly.js build, and then to draw a contour and a scatter plot with it.

    .venv/bin/python bench/plotly_eval.py [--rounds N]

Builds compared, each in fresh browser contexts, interleaved: the partial plotly.js curvlab serves
(curvlab_jupyter/vendor, tools/plotly_build: scatter, contour, heatmap), npm's cartesian bundle it
replaced (read from git history, commit 8450f03's parent), and the whole plotly.min.js the
pinned plotly ships. Prints the median ms of each (evaluation; first plot).
"""

import argparse
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curvlab_jupyter.plotly_widget import PARTIAL_FILE, plotly_full_source  # noqa: E402
from tests.browser.conftest import ARGS, CHROMIUM  # noqa: E402

CARTESIAN = "8450f03^:curvlab_jupyter/vendor/plotly-cartesian-4.1.1.min.js"
PLOT = """() => { const t = performance.now();
  Plotly.newPlot('g', [{type: 'contour', z: [[1, 2], [3, 4]]}, {type: 'scatter', x: [1, 2],
                       y: [3, 1]}]);
  return performance.now() - t; }"""


def builds():
    out = {"partial (served)": PARTIAL_FILE.read_text()}
    old = subprocess.run(["git", "show", CARTESIAN], cwd=ROOT, capture_output=True, text=True)
    if old.returncode == 0:
        out["npm cartesian (before)"] = old.stdout
    else:
        print(f"(no {CARTESIAN} in this checkout's history: cartesian left out)")
    out["whole plotly.min.js"] = plotly_full_source()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    o = ap.parse_args()
    from playwright.sync_api import sync_playwright
    srcs = builds()
    times = {k: [] for k in srcs}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for i in range(o.rounds):
            for name in (list(srcs) if i % 2 == 0 else list(srcs)[::-1]):
                context = browser.new_context()
                page = context.new_page()
                page.set_content("<html><body><div id=g></div></body></html>")
                page.add_script_tag(content="window.__ts = performance.now();" + srcs[name]
                                    + "\nwindow.__te = performance.now();")
                evaluated = page.evaluate("() => window.__te - window.__ts")
                times[name].append((evaluated, page.evaluate(PLOT)))
                context.close()
        browser.close()
    print(f"median of {o.rounds} fresh contexts each, ms")
    for name, runs in times.items():
        print(f"{name:>24}: evaluate {statistics.median(a for a, _ in runs):6.0f}   first plot "
              f"{statistics.median(b for _, b in runs):6.0f}   ({len(srcs[name]) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
