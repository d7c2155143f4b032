// plotly.js with the trace types curvlab's 2-D figures draw — scatter (in plotly.js's core),
// contour and heatmap — built from plotly.js's own sources the way its partial bundles are
// (its esbuild settings, its UMD wrapper and header), into
// curvlab_jupyter/vendor/plotly-curvlab-<version>.min.js (or the path given as the argument).
// curvlab_jupyter.plotly_widget.split serves it in place of the whole plotly.js; a figure with
// any other trace type gets the whole one.
//
// Why not npm's plotly.js-cartesian-dist-min: its twelve trace types and the world calendars
// take about 0.7 s of a page's main thread to evaluate on a 2-core machine, these three about
// 0.15 s (bench/plotly_eval.py). Rebuild (the output is committed; nothing runs this at
// install time, and tests/dashboards/test_split.py rebuilds it in a scratch directory and
// compares the bytes):
//     cd tools/plotly_build && npm ci && npm run build
import { build } from "esbuild";
import { environmentPlugin } from "esbuild-plugin-environment";
import { readFileSync, writeFileSync } from "node:fs";

export const TRACES = ["contour", "heatmap"];   // and scatter, which the core registers
const version = JSON.parse(readFileSync("node_modules/plotly.js/package.json")).version;
const entry = "var Plotly = require('plotly.js/lib/core');\nPlotly.register([\n"
  + TRACES.map((t) => `    require('plotly.js/lib/${t}'),`).join("\n")
  + "\n]);\nmodule.exports = Plotly;\n";

const result = await build({
  stdin: { contents: entry, resolveDir: ".", loader: "js" },
  write: false,
  format: "iife",
  globalName: "Plotly",
  bundle: true,
  minify: true,
  sourcemap: false,
  // the only CSS plotly.js imports is maplibre's, for map traces, which this bundle has not
  // (plotly.js inlines it; here it is left out, which also keeps the build byte-reproducible)
  loader: { ".css": "empty" },
  plugins: [environmentPlugin({ NODE_DEBUG: false })],
  define: { global: "window", "define.amd": "false" },
  target: "es2016",
  logLevel: "warning",
});
const code = result.outputFiles[0].text;
// plotly.js's header and UMD wrapper (as in its dist files), so that
// curvlab_jupyter.plotly_widget reads the version and wraps it as it did npm's bundles
const header = `/**
* plotly.js (curvlab: scatter, ${TRACES.join(", ")} - minified) v${version}
* Copyright 2012-2026, Plotly, Inc.
* All rights reserved.
* Licensed under the MIT license
*/
(
 function(root, factory) {
  if (typeof module === "object" && module.exports) {
   module.exports = factory();
  } else {
   root.moduleName = factory();
  }
} (typeof self !== "undefined" ? self : this, () => {
`;
const footer = "\nwindow.Plotly = Plotly;\nreturn Plotly;\n}));\n";
const out = process.argv[2] ??
  new URL(`../../curvlab_jupyter/vendor/plotly-curvlab-${version}.min.js`, import.meta.url).pathname;
writeFileSync(out, header + code + footer);
console.log(`wrote ${out} (${(header + code + footer).length} bytes)`);
