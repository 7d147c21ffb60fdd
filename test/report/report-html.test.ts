// out/report.html and the report's facts: a compile with ILA-AMP and `--eval` on a tiny model,
// its perplexities checked against evaluatePerplexity on the same windows (the source, an
// RTN-ternary compile made apart, this compile), then the page opened from disk in headless
// Chromium with every network request refused: each chart must exist and have drawn pixels,
// with no console error. TWLAC_REPORT_SCREENSHOT=path keeps the screenshot.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTinyLlama } from '../fixtures/make-fixtures.ts';
import { wordText } from '../cli/word-text.ts';
import { saveModel } from '../../src/graph/onnx.ts';
import { byteTokenizerJson } from '../../src/demo.ts';
import { compileToDir } from '../../src/compile.ts';
import { calibrationSegmentsFromText } from '../../src/calib/data.ts';
import { loadTokenizer, tokenizeText } from '../../src/eval/tokenizer.ts';
import { evaluatePerplexity } from '../../src/eval/perplexity.ts';
import type { ArtifactManifest } from '../../src/artifact/manifest.ts';
import { ampSummary } from '../../src/report.ts';
import { renderHtmlReport } from '../../src/report-html.ts';
import { decodePng } from '../runtime/png.ts';

const CHROMIUM = '/usr/bin/chromium';
const WINDOWS = 6;
const tmp = mkdtempSync(join(tmpdir(), 'twlac-report-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const source = join(tmp, 'source', 'model.onnx');
const out = join(tmp, 'out');
let manifest: ArtifactManifest;
let ids: Int32Array;

beforeAll(async () => {
  mkdirSync(join(tmp, 'source'));
  saveModel(makeTinyLlama({ hidden: 64, seed: 4 }), source);
  writeFileSync(join(tmp, 'source', 'tokenizer.json'), JSON.stringify(byteTokenizerJson()));
  const tok = loadTokenizer(join(tmp, 'source', 'tokenizer.json'));
  const calib = calibrationSegmentsFromText(wordText(3000, 1), tok.encode, { samples: 8, seq: 64, seed: 0 });
  ids = tokenizeText(tok, wordText(800, 2));
  ({ manifest } = await compileToDir(source, out, { weights: 'twla', calib, acts: { kind: 'mp', budget: 4 } }, undefined, {
    tokenizer: join(tmp, 'source', 'tokenizer.json'),
    eval: { ids, text: 'held-out.txt', maxWindows: WINDOWS },
    timings: true,
  }));
}, 120_000);

describe('report facts', () => {
  it('perplexity against bits: the source, RTN ternary and this compile, each as evaluatePerplexity gives it on the same windows', async () => {
    const e = manifest.eval!;
    expect(e).toMatchObject({ text: 'held-out.txt', windows: WINDOWS, windowSize: 256, tokens: WINDOWS * 256 });
    expect(e.seconds).toBeGreaterThan(0);
    expect(e.points.map((p) => p.model)).toEqual(['source', 'rtn-ternary', 'compiled']);
    const ppl = async (model: string) => (await evaluatePerplexity(model, ids, { maxWindows: WINDOWS })).ppl;
    const rtnDir = join(tmp, 'rtn');
    const rtn = await compileToDir(source, rtnDir, { weights: 'rtn-ternary' });
    const [src, rt, cmp] = e.points;
    expect(src.ppl).toBeCloseTo(await ppl(source), 9);
    expect(rt.ppl).toBeCloseTo(await ppl(join(rtnDir, 'model.onnx')), 9);
    expect(cmp.ppl).toBeCloseTo(await ppl(join(out, 'model.onnx')), 9);
    // Bits from bytes: fp32 source linears; each compile's weights.bin.
    expect(src.bitsPerWeight).toBe(32);
    expect(rt.bitsPerWeight).toBe(rtn.manifest.bitsPerWeight);
    expect(cmp.bitsPerWeight).toBe(manifest.bitsPerWeight);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toContain(`| this compile | ${cmp.bitsPerWeight.toFixed(3)} | ${cmp.ppl.toFixed(3)} |`);
  }, 120_000);

  it('per-linear errors: every quantised linear has a weight error and, calibrated, an output error in (0, 1)', () => {
    const linears = manifest.blocks.flatMap((_, i) => ['q', 'k', 'v', 'o', 'gate', 'up', 'down'].map((r) => `blocks.${i}.${r}`));
    expect(Object.keys(manifest.errors!).sort()).toEqual(linears.sort());
    for (const e of Object.values(manifest.errors!)) {
      expect(e.weight).toBeGreaterThan(0);
      expect(e.output).toBeGreaterThan(0);
      expect(e.output).toBeLessThan(1);
    }
  });

  it('says when ILA-AMP mixed nothing, and what it mixed otherwise', () => {
    const withBits = (bits: (b: number, s: string) => number): ArtifactManifest => ({
      ...manifest,
      blocks: manifest.blocks.map((b, i) => ({ ...b, acts: Object.fromEntries(Object.entries(b.acts).map(([s, a]) => [s, { ...a, bits: bits(i, s) }])) as typeof b.acts })),
    });
    expect(ampSummary(withBits(() => 4))).toMatch(/4 bits at every site of every block .*nothing is mixed/);
    expect(ampSummary(withBits((i) => (i === 0 ? 2 : 6)))).toMatch(/mixed 2, 6 bits/);
    expect(ampSummary({ ...manifest, method: { ...manifest.method, acts: { kind: 'uniform', bits: 4 } } })).toBeUndefined();
    // This compile's own sentence is in both reports.
    const said = ampSummary(manifest)!;
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toContain(said);
    expect(readFileSync(join(out, 'report.html'), 'utf8')).toContain(said.replace(/&/g, '&amp;'));
  });

  it('without --eval the page says how to get the perplexity chart instead of drawing it', () => {
    const html = renderHtmlReport({ ...manifest, eval: undefined }, { seconds: 1 });
    expect(html).not.toContain('id="ppl"');
    expect(html).toMatch(/--eval TEXT.*held-out/);
  });

  it('without --timings the page says the times were not recorded instead of charting zeros', () => {
    expect(renderHtmlReport(manifest, { seconds: 1 })).toContain('<canvas id="time">');
    const html = renderHtmlReport({ ...manifest, timings: undefined }, { seconds: 0 });
    expect(html).not.toContain('<canvas id="time">');
    expect(html).toMatch(/not recorded[\s\S]*--timings/);
  });
});

describe('report.html in headless Chromium', () => {
  const skip = existsSync(CHROMIUM) ? undefined : `no browser at ${CHROMIUM} (scripts/install-webgpu-deps.sh installs it)`;
  it.skipIf(!!skip && !process.env.CI)('draws every chart from the file alone: no request leaves the page, no console error, every canvas has drawn pixels', async () => {
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: join(tmp, 'chromium'),
      args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('console', (msg) => ['error', 'warn'].includes(msg.type()) && problems.push(`console.${msg.type()}: ${msg.text()}`));
      page.on('pageerror', (e) => problems.push(`page error: ${String(e)}`));
      const url = pathToFileURL(join(out, 'report.html')).href;
      await page.setRequestInterception(true);
      page.on('request', (req) => {
        if (req.url() === url) void req.continue();
        else {
          problems.push(`request: ${req.url()}`);
          void req.abort();
        }
      });
      await page.setViewport({ width: 1100, height: 900 });
      await page.goto(url, { waitUntil: 'load' });
      await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), { timeout: 30_000 });
      const r = await page.evaluate(() => {
        const w = window as unknown as { twlacCharts?: string[]; twlacError?: string };
        const inked = [...document.querySelectorAll('canvas')].map((c) => {
          const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
          return { id: c.id, width: c.width, height: c.height, inked: n / (c.width * c.height) };
        });
        return { state: document.body.dataset.state, charts: w.twlacCharts, error: w.twlacError, inked, manifest: document.getElementById('manifest')!.textContent };
      });
      expect(r.error).toBeUndefined();
      expect(r.state).toBe('done');
      expect(r.charts).toEqual(['ppl', 'errors', 'bits', 'bpw', 'time']);
      for (const c of r.inked) {
        expect(c.width, c.id).toBeGreaterThan(300);
        // Axes, labels and bars: a blank canvas has none of its pixels drawn.
        expect(c.inked, c.id).toBeGreaterThan(0.01);
      }
      // The page holds the manifest as it was before the page's own entry was added to it.
      const { 'report.html': pageBytes, ...files } = manifest.files;
      expect(pageBytes).toBe(statSync(join(out, 'report.html')).size);
      expect(JSON.parse(r.manifest!)).toEqual(JSON.parse(JSON.stringify({ ...manifest, files })));
      expect(problems).toEqual([]);
      const shot = process.env.TWLAC_REPORT_SCREENSHOT ?? join(tmp, 'report.png');
      await page.screenshot({ path: shot, fullPage: true });
      // The bars of the bit map, as rendered: pixels in the sites' colours inside its canvas.
      const bits = decodePng(new Uint8Array(await (await page.$('#bits'))!.screenshot({ type: 'png' })));
      let blue = 0;
      for (let i = 0; i < bits.width * bits.height; i++) if (bits.rgba[i * 4] < 0x60 && bits.rgba[i * 4 + 2] > 0xb0) blue++;
      expect(blue).toBeGreaterThan(500);
    } finally {
      await browser.close();
    }
  }, 120_000);
});
