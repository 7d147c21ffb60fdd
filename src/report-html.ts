// out/report.html: the report as one self-contained page (no network, no other files). The
// manifest is embedded as JSON, and Chart.js (its UMD build, inlined) draws from it:
// perplexity against bits (with --eval), per-linear weight and output error, the activation
// bit map per block and site, bits per weight from bytes per linear, and time per pass.
// The tables beside the charts carry the same numbers for readers without scripts.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ArtifactManifest } from './artifact/manifest.ts';
import { ACT_SITES, BLOCK_LINEARS } from './artifact/build.ts';
import { ampSummary, pointLabel, timeRows, type ReportInfo } from './report.ts';

let chartJs: string | undefined;
/** Chart.js's minified UMD build (the package exports only its ESM and CJS entry points, so find it beside them). */
function chartJsSource(): string {
  chartJs ??= readFileSync(join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js'), 'utf8');
  return chartJs;
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
/** Text safe inside a <script> element: no `</script` (nor `<!--`) can close it early. */
const scriptText = (s: string) => s.replace(/<(?=\/script|!--)/gi, '\\x3C');
const f3 = (x: number) => x.toFixed(3);

export function renderHtmlReport(m: ArtifactManifest, info: ReportInfo): string {
  const c = m.config;
  const amp = ampSummary(m);
  const timed = !!m.timings?.length;
  const data = { manifest: m, blockLinears: BLOCK_LINEARS, actSites: ACT_SITES, pointLabel, times: timeRows(m, info) };
  const evalSection = m.eval
    ? `<p>Held-out text <code>${esc(m.eval.text)}</code> (it must never have been used for calibration or any search): ${m.eval.windows} windows of ${m.eval.windowSize} tokens, onnxruntime, EVAL.md protocol.</p>
<div class="chart"><canvas id="ppl"></canvas></div>
<table><tr><th>model</th><th>bits/weight</th><th>PPL</th></tr>${m.eval.points.map((p) => `<tr><td>${esc(pointLabel[p.model])}</td><td>${f3(p.bitsPerWeight)}</td><td>${f3(p.ppl)}</td></tr>`).join('')}</table>`
    : `<p class="note">No perplexity: compile with <code>--eval TEXT</code>, where TEXT is held-out text (never used for calibration), to plot this compile against the source and an RTN-ternary compile.</p>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>twlac report: ${esc(m.source.path)}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 16px 24px; color: #1d2430; }
h1 { font-size: 22px; margin: 8px 0; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d8dde6; padding-bottom: 4px; }
code { background: #f1f3f7; padding: 0 3px; border-radius: 3px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; } .card { border: 1px solid #d8dde6; border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.card b { display: block; font-size: 20px; } .note { background: #fff7e0; border-left: 3px solid #e0a800; padding: 6px 10px; }
.chart { position: relative; height: 320px; } .chart.tall { height: 420px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; } td, th { border: 1px solid #d8dde6; padding: 2px 8px; text-align: right; } th { background: #f1f3f7; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f6f8fb; padding: 10px; overflow: auto; max-height: 480px; font-size: 12px; }
</style></head>
<body data-state="loading">
<h1>twlac report</h1>
<p>Source <code>${esc(m.source.path)}</code>: ${esc(c.arch)}, ${c.layers} layers, hidden ${c.hidden}, ${c.heads} heads / ${c.kvHeads} KV heads of ${c.headDim}, intermediate ${c.intermediate}, vocab ${c.vocab}. Method <code>${esc(JSON.stringify({ ...m.method, ilaAmp: undefined }))}</code>.</p>
<div class="cards">
<div class="card">weights.bin<b>${f3(m.bitsPerWeight)}</b>bits/weight (from bytes)</div>
${m.onnx ? `<div class="card">model.onnx<b>${f3(m.onnx.bitsPerWeight)}</b>bits/weight (from bytes)</div>` : ''}
${m.eval ? `<div class="card">perplexity<b>${f3(m.eval.points.find((p) => p.model === 'compiled')!.ppl)}</b>source ${f3(m.eval.points.find((p) => p.model === 'source')!.ppl)}</div>` : ''}
<div class="card">run time<b>${timed ? `${info.seconds.toFixed(1)} s` : 'not recorded'}</b>${!timed ? 'compile with --timings' : m.eval?.seconds !== undefined ? `evaluation ${m.eval.seconds.toFixed(1)} s of it` : 'load and write included'}</div>
</div>
${amp ? `<p class="note" id="amp-note">${esc(amp)}</p>` : ''}
<h2>Perplexity against bits per weight</h2>
${evalSection}
<h2>Error per linear</h2>
<p>Relative squared error of each quantised linear: weight ‖W − Ŵ‖²/‖W‖², and output ‖(W − Ŵ)Xᵀ‖²/‖WXᵀ‖² on the calibration inputs X (none without calibration; an even row sample for large linears, see the manifest's <code>errors</code>).</p>
<div class="chart tall"><canvas id="errors"></canvas></div>
<h2>Activation bits per block and site</h2>
<p>The bits of each linear input site (attn: q/k/v, o, mlp: gate/up, down); 16 = not quantised.</p>
<div class="chart"><canvas id="bits"></canvas></div>
<table><tr><th>block</th>${ACT_SITES.map((s) => `<th>${s}</th>`).join('')}</tr>${m.blocks.map((b, i) => `<tr><td>${i}</td>${ACT_SITES.map((s) => `<td>${b.acts[s].bits}</td>`).join('')}</tr>`).join('')}</table>
<h2>Bits per weight per linear (from bytes)</h2>
<div class="chart"><canvas id="bpw"></canvas></div>
<h2>Time per pass</h2>
${timed ? '<div class="chart"><canvas id="time"></canvas></div>' : '<p class="note">Not recorded: without <code>--timings</code> a compile leaves its timings out of out/, so that the same inputs give the same bytes (the CLI prints them on stderr).</p>'}
<h2>Manifest</h2>
<details><summary>manifest.json (${Object.keys(m.tensors).length} tensors)</summary><pre id="manifest"></pre></details>
<script type="application/json" id="twlac-data">${scriptText(JSON.stringify(data))}</script>
<script>${scriptText(chartJsSource())}</script>
<script>${scriptText(CLIENT)}</script>
</body></html>
`;
}

/** The page's own script: charts from the embedded data; `window.twlacCharts` and `body[data-state]` tell a test what happened. */
const CLIENT = `
(function () {
  const d = JSON.parse(document.getElementById('twlac-data').textContent);
  const m = d.manifest;
  const colors = ['#3366cc', '#dc3912', '#109618', '#ff9900', '#990099', '#0099c6', '#dd4477'];
  const charts = [];
  try {
    document.getElementById('manifest').textContent = JSON.stringify(m, null, 1);
    const chart = (id, config) => charts.push(new Chart(document.getElementById(id), { ...config, options: { maintainAspectRatio: false, animation: false, ...config.options } }));
    const ids = m.blocks.flatMap((b, i) => d.blockLinears.map((r) => 'blocks.' + i + '.' + r));
    // log-axis bounds a quarter beyond the data, so that no point sits on the frame
    const around = (xs) => ({
      min: Math.min(...xs) / 1.25,
      max: Math.max(...xs) * 1.25,
      // the bounds themselves are not round numbers: leave them unlabelled
      ticks: { callback(v, i, ticks) { return i === 0 || i === ticks.length - 1 ? '' : Chart.Ticks.formatters.logarithmic.call(this, v, i, ticks); } },
    });
    if (m.eval) {
      chart('ppl', {
        type: 'scatter',
        data: { datasets: m.eval.points.map((p, i) => ({ label: d.pointLabel[p.model], data: [{ x: p.bitsPerWeight, y: p.ppl }], backgroundColor: colors[i], pointRadius: 7 })) },
        options: { scales: { x: { type: 'logarithmic', ...around(m.eval.points.map((p) => p.bitsPerWeight)), title: { display: true, text: 'bits per weight (from bytes)' } }, y: { type: 'logarithmic', ...around(m.eval.points.map((p) => p.ppl)), title: { display: true, text: 'perplexity (held-out)' } } } },
      });
    }
    const err = (k) => ids.map((id) => (m.errors && m.errors[id] && m.errors[id][k] !== undefined ? m.errors[id][k] : null));
    chart('errors', {
      type: 'bar',
      data: { labels: ids, datasets: [{ label: 'weight error', data: err('weight'), backgroundColor: colors[0] }, { label: 'output error', data: err('output'), backgroundColor: colors[1] }] },
      options: { scales: { y: { type: 'logarithmic', title: { display: true, text: 'relative squared error' } } } },
    });
    chart('bits', {
      type: 'bar',
      data: { labels: m.blocks.map((_, i) => 'block ' + i), datasets: d.actSites.map((s, i) => ({ label: s, data: m.blocks.map((b) => b.acts[s].bits), backgroundColor: colors[i] })) },
      options: { scales: { y: { min: 0, max: 16, title: { display: true, text: 'activation bits' } } } },
    });
    const bpw = [{ label: 'weights.bin', data: ids.map((id, j) => m.blocks[Math.floor(j / d.blockLinears.length)][d.blockLinears[j % d.blockLinears.length]].bitsPerWeight), backgroundColor: colors[2] }];
    if (m.onnx) bpw.push({ label: 'model.onnx', data: ids.map((id) => (m.onnx.linears[id] ? m.onnx.linears[id].bitsPerWeight : null)), backgroundColor: colors[3] });
    chart('bpw', { type: 'bar', data: { labels: ids, datasets: bpw }, options: { scales: { y: { beginAtZero: true, grace: '10%', title: { display: true, text: 'bits per weight' } } } } });
    const t = d.times;
    if (document.getElementById('time')) chart('time', {
      type: 'bar',
      data: { labels: t.map((x) => x.pass), datasets: [{ label: 'seconds', data: t.map((x) => x.seconds), backgroundColor: colors[4] }] },
      options: { indexAxis: 'y', scales: { x: { title: { display: true, text: 'seconds' } } } },
    });
    window.twlacCharts = charts.map((c) => c.canvas.id);
    document.body.dataset.state = 'done';
  } catch (e) {
    window.twlacError = String(e && e.stack ? e.stack : e);
    document.body.dataset.state = 'error';
  }
})();
`;
