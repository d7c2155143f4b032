"""Profile (not a test): where one visitor's first render goes, from the browser's own timings.

    .venv/bin/python bench/first_render.py [landscape spectra ...]     # prints, writes nothing

Serves the apps as `./run apps` does (refills held back), waits until every pooled kernel has
run its app, opens the landing page, then each app in a cold browser context, and prints the
navigation timings (response, DOMContentLoaded, load), when each plot first drew, and every
resource fetched with its start, end and size, in order — the figures behind the breakdown in
bench/results_apps.md.
"""

import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import ARGS, CHROMIUM, serve_voila  # noqa: E402
from tests.browser.test_apps import RENDER_COUNTER  # noqa: E402
from class_load import wait_for_pool  # noqa: E402

MARKS = ("window.__marks = []; document.addEventListener('plotlywidget-after-render',"
         " () => window.__marks.push(performance.now()));")


def main(apps):
    from playwright.sync_api import sync_playwright
    log_path = ROOT / "test-output" / "first_render_voila.log"
    log_path.parent.mkdir(exist_ok=True)
    served = sorted(p.stem for p in (ROOT / "apps").glob("*.ipynb") if p.stem != "index")
    with open(log_path, "w") as log, serve_voila(ROOT / "apps", log, fill_delay=120) as url, \
            sync_playwright() as pw:
        wait_for_pool(log_path, {app: 1 for app in served})
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        landing = browser.new_page()
        landing.goto(f"{url}/voila/render/index.ipynb")
        landing.close()
        for app in apps:
            context = browser.new_context(viewport={"width": 1400, "height": 1600})
            page = context.new_page()
            page.add_init_script(RENDER_COUNTER + MARKS)
            t0 = time.perf_counter()
            page.goto(f"{url}/voila/render/{app}.ipynb", wait_until="commit")
            page.wait_for_function("() => document.querySelector('#loading') === null && window.__curvlabRenders >= 1",
                                   polling=50, timeout=120_000)
            page.wait_for_timeout(3000)                       # let the other plots draw
            nav = json.loads(page.evaluate("() => JSON.stringify(performance.getEntriesByType('navigation')[0])"))
            resources = page.evaluate("() => performance.getEntriesByType('resource').map(r =>"
                                      " [r.name.slice(-70), Math.round(r.startTime), Math.round(r.responseEnd), r.transferSize])")
            print(f"{app}: page request to now {time.perf_counter() - t0:.1f} s; navigation (ms):",
                  {k: round(nav[k]) for k in ("responseStart", "responseEnd", "domContentLoadedEventEnd", "loadEventEnd")},
                  "; plots drawn at (ms):", [round(x) for x in page.evaluate("window.__marks")])
            for name, start, end, size in sorted(resources, key=lambda r: r[1]):
                print(f"    {start:6d} – {end:6d} ms  {size:9,d} B  {name}")
            context.close()
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1:] or ["landscape"])
