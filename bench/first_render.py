"""Profile (not a test): one cold visitor's first plot, and where its time goes, from the browser's
own clock; optionally two page variants measured interleaved.

    .venv/bin/python bench/first_render.py [APP] [--visits N] [--ab VARIANT] [--write]

Serves apps/ as `./run apps` does (curvlab.dashboards.serve: preheated kernels, curvlab's
template, curvlab_jupyter's bundle) with a pool of POOL kernels for APP only (default landscape;
no other app preheats, so nothing else runs meanwhile). Each visit is a fresh browser context
(empty cache) in one headless Chromium; before each one the bench waits until the pool is full
again and every pooled kernel has run the app (asked of the kernel, class_load.has_run_app), so
a visit never shares the cores with a refill; the visited kernel is shut down afterwards.

Times are the page's `performance.now()`, whose origin is the navigation's start (the page
request), in ms:
  html        the page's HTML received (navigation responseEnd; preheated: sent whole)
  dcl / load  DOMContentLoaded's end / the load event's end
  fetched     plotly's widget bundle (curvlab/plotly-widget.js) received (resource responseEnd)
  evaluated   that module evaluated (it resolves the global slot: a pre-set slot marks it)
  ws open     the page's kernel websocket open
  states      the widgets' states arrived (the frame with "update_states")
  model       the first figure's front-end module loaded (anywidget's first blob-URL module)
  plot        the first plot drawn ('plotlywidget-after-render'): the goal, ≤ 2 s median
and the main thread's long tasks (> 50 ms) up to the first plot.

--ab VARIANT measures VARIANT against the page as served, alternating A, B, B, A, … (N visits
each); a variant is a change to the served HTML, made in the browser (Playwright's route) for
both sides alike:
  no-early     the template's early `import` of the bundle removed (as the figures' loader alone)
  modulepreload  the early module script replaced by <link rel="modulepreload"> (fetched and
               compiled early, evaluated when the first figure's module imports it)
  whole        plotly's widget code with all of plotly.js (the server's `?whole`), as before
               plotly_widget.split
--write puts the summary in bench/results_apps.md (the "First plot" section, replaced in place).
"""

import argparse
import pathlib
import re
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from class_load import has_run_app  # noqa: E402

from tests.browser.conftest import ARGS, CHROMIUM, serve_voila  # noqa: E402

POOL = 2
BUNDLE = "curvlab/plotly-widget.js"
# Marks set in the page before any of its scripts runs (an init script).
MARKS = r"""
window.__t = {}; window.__long = [];
const mark = (k) => { if (!(k in window.__t)) window.__t[k] = performance.now(); };
{ let r; const p = new Promise((x) => { r = x; });   // the bundle resolves this slot last
  globalThis.__curvlabPlotlyWidget = { p, r: (f) => { mark("evaluated"); r(f); } }; }
document.addEventListener("plotlywidget-after-render", () => mark("plot"));
const createURL = URL.createObjectURL;
URL.createObjectURL = function (blob) {
  if (blob && /javascript/.test(blob.type)) mark("model");
  return createURL.call(URL, blob);
};
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...a) {
    super(...a);
    if (!/\/channels/.test(String(a[0]))) return;
    this.addEventListener("open", () => mark("ws open"));
    this.addEventListener("message", (e) => {
      const d = e.data;
      if ((typeof d === "string" ? d : new TextDecoder().decode(d)).includes("update_states"))
        mark("states");
    });
  }
};
new PerformanceObserver((l) => { for (const e of l.getEntries())
  window.__long.push([Math.round(e.startTime), Math.round(e.duration)]); })
  .observe({ type: "longtask", buffered: true });
"""
ORDER = ("html", "dcl", "fetched", "evaluated", "load", "ws open", "states", "model", "plot")
EARLY = re.compile(r'<script type="module" async src="([^"]*curvlab/plotly-widget\.js)"></script>')
# name: (change to the page's HTML, or None; query added to the bundle's URL, or "")
VARIANTS = {
    # plotly's widget code with all of plotly.js (4.9 MB), as it was before the split
    "whole": (None, "?whole"),
    "no-early": (lambda html: EARLY.sub("", html), ""),
    "modulepreload": (lambda html: EARLY.sub(r'<link rel="modulepreload" href="\1">', html), ""),
    # fetched and compiled at once, evaluated when the page opens its kernel websocket: during
    # the kernel's handshake and its reply with the widgets' states
    "on-ws": (lambda html: EARLY.sub(r'<link rel="modulepreload" href="\1"><script>'
                                     + ON_WS + "</script>", html), ""),
}
ON_WS = ("(() => { const N = window.WebSocket; let go = false;"
         " window.WebSocket = class extends N { constructor(...a) { super(...a);"
         " if (!go && /\\/channels/.test(String(a[0]))) { go = true; import("
         "document.querySelector('link[rel=modulepreload]').href); } } }; })();")
SAME = (None, "")
# A page fulfilled by Playwright's route has no address space, and Chromium's local network
# access checks then refuse its loopback websocket: off for the bench (not for the tests).
BENCH_ARGS = ARGS + ["--disable-features=LocalNetworkAccessChecks"]


def _kernels(log_path):
    text = pathlib.Path(log_path).read_text()
    folder = re.search(r"Storing connection files in (\S+?)\.?$", text, re.M)
    return (pathlib.Path(folder.group(1)) if folder else None,
            re.findall(r"Kernel started: ([0-9a-f-]{36})", text))


def wait_ready(log_path, used, timeout=600):
    """Until POOL kernels not yet visited have run the app (and wait for their visitor)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        folder, started = _kernels(log_path)
        ready = [k for k in started if k not in used and folder
                 and has_run_app(folder / f"kernel-{k}.json")]
        if len(ready) >= POOL:
            return
        time.sleep(1)
    raise RuntimeError(f"the pool did not refill with {POOL} ready kernels in {timeout} s")


def visit(browser, url, app, change=SAME, routed=(False, False)):
    """One cold visit; (timeline in ms, long tasks, kernel id, bundle requests). The page's HTML
    and the bundle's request go through Playwright's route when `routed` says so (then on both
    sides of a comparison, so that its cost is common), changed by `change`."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    page.add_init_script(MARKS)
    target = f"{url}/voila/render/{app}.ipynb"
    html, query = change
    if routed[0]:
        page.route(target, lambda route: route.fulfill(response=(r := route.fetch()),
                                                       body=(html or (lambda h: h))(r.text())))
    if routed[1]:             # the module's URL stays the page's; the server sees the query
        page.route(f"**/{BUNDLE}", lambda route: route.continue_(url=route.request.url + query))
    try:
        page.goto(target, wait_until="commit")
        page.wait_for_function("() => 'plot' in window.__t", polling=50, timeout=120_000)
        got = page.evaluate(f"""() => {{
            const n = performance.getEntriesByType('navigation')[0];
            const b = performance.getEntriesByType('resource')
              .filter(r => r.name.split('?')[0].endsWith('{BUNDLE}'));
            const config = document.getElementById('jupyter-config-data').textContent;
            return {{t: {{...window.__t, html: n.responseEnd, dcl: n.domContentLoadedEventEnd,
                          load: n.loadEventEnd || null,
                          fetched: b.length ? b[0].responseEnd : null}},
                     long: window.__long, bundles: b.length,
                     kernel: JSON.parse(config).kernelId}};
        }}""")
    finally:
        context.close()
    long = [lt for lt in got["long"] if lt[0] < got["t"]["plot"]]
    return got["t"], long, got["kernel"], got["bundles"]


def shut_down(url, kernel):
    try:
        ask = urllib.request.Request(f"{url}/api/kernels/{kernel}", method="DELETE")
        urllib.request.urlopen(ask, timeout=10)
    except Exception:                      # Voila may refuse: the kernel then idles until culled
        pass


def line(name, t, long):
    marks = "  ".join(f"{k} {t[k]:5.0f}" for k in ORDER if t.get(k) is not None)
    busy = sum(d for _, d in long)
    return f"{name:>13}: {marks}  | long tasks {len(long)}, {busy} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("app", nargs="?", default="landscape")
    ap.add_argument("--visits", type=int, default=3)
    ap.add_argument("--ab", choices=sorted(VARIANTS))
    ap.add_argument("--write", action="store_true")
    ap.add_argument("-v", action="store_true", help="print each visit's long tasks")
    o = ap.parse_args()
    from playwright.sync_api import sync_playwright
    sides = {"served": SAME} | ({o.ab: VARIANTS[o.ab]} if o.ab else {})
    routed = (any(c[0] for c in sides.values()), any(c[1] for c in sides.values()))
    order = [s for i in range(o.visits) for s in (list(sides) if i % 2 == 0 else list(sides)[::-1])]
    log_path = ROOT / "test-output" / "first_render_voila.log"
    log_path.parent.mkdir(exist_ok=True)
    results = {s: [] for s in sides}
    loads = []
    with open(log_path, "w") as log, serve_voila(ROOT / "apps", log, pool=0, pools={o.app: POOL},
                                                 fill_delay=1) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BENCH_ARGS)
        used = set()
        for i, side in enumerate(["warm-up"] + order):   # the first: the server's templates
            wait_ready(log_path, used)
            loads.append(float(pathlib.Path("/proc/loadavg").read_text().split()[0]))
            t, long, kernel, bundles = visit(browser, url, o.app, sides.get(side, SAME), routed)
            used.add(kernel)
            shut_down(url, kernel)
            print(line(side, t, long), f"| bundle requests {bundles} | load {loads[-1]:.2f}",
                  flush=True)
            if o.v:
                print("    long tasks [start, ms]:", long)
            if i:
                results[side].append((t, long))
        browser.close()
    summary = [f"{o.app}, {o.visits} cold visits per side, interleaved; 1-min load average before "
               f"visits {min(loads):.2f}–{max(loads):.2f} (`uptime`; the 2 cores are shared with "
               "other work)", "", "| side | " + " | ".join(ORDER) + " | long tasks (ms) |",
               "|---|" + "---:|" * (len(ORDER) + 1)]
    for side, runs in results.items():
        med = {k: statistics.median(t[k] for t, _ in runs if t.get(k) is not None) for k in ORDER
               if any(t.get(k) is not None for t, _ in runs)}
        busy = statistics.median(sum(d for _, d in long) for _, long in runs)
        cells = [f"{med[k]:.0f}" if k in med else "–" for k in ORDER]
        summary.append(f"| {side} | " + " | ".join(cells) + f" | {busy:.0f} |")
        summary.append(f"| {side}: first plot, each visit | "
                       + ", ".join(f"{t['plot']:.0f}" for t, _ in runs) + " |" + " |" * len(ORDER))
    print("\n".join(summary))
    if o.write:
        write_section(summary)


def write_section(summary):
    path = ROOT / "bench" / "results_apps.md"
    head = "## First plot (bench/first_render.py)"
    text = path.read_text()
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=ROOT).stdout.strip()
    body = [head, "", f"Medians in ms from the page request (performance.now()), commit {rev} plus "
            "the working tree, " + time.strftime("%Y-%m-%d %H:%M") + ":", "", *summary, ""]
    text = text.split(head)[0].rstrip("\n") + "\n\n" + "\n".join(body)
    path.write_text(text)


if __name__ == "__main__":
    main()
