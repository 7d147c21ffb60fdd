// Reproducible builds: the same model, options and seed give a byte-identical out/ on the
// CPU path. Two compiles of the shared fixture with the full TWLA method (KOTMS rotation,
// E2M-ATQ with GPTQ feedback, X-domain refit) run side by side through bin/twlac.js, with
// little calibration (2 segments of 64 tokens) to keep the cost near a minute a compile, and
// one fit thread each, so that the two side by side do not oversubscribe two cores (112 s
// against 170 s with a thread a core each; the same bytes for any thread count is
// test/passes/ternary.test.ts's). Every file of the two outputs must match, and the manifest
// must say what produced it.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ArtifactManifest } from '../../src/artifact/manifest.ts';
import { REPO_ROOT, MODELS, TRAIN, haveShared } from '../eval/shared.ts';

const tmp = mkdtempSync(join(tmpdir(), 'twlac-det-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function compile(out: string): Promise<{ code: number | null; stderr: string }> {
  const args = [join(REPO_ROOT, 'bin/twlac.js'), MODELS.fp32, '--weights', 'twla', '--calib', TRAIN, '--calib-samples', '2', '--seq', '64', '--seed', '3', '--threads', '1', '-o', out, '-q'];
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', rej);
    child.on('close', (code) => res({ code, stderr }));
  });
}

function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

describe.skipIf(!haveShared)('reproducible output', () => {
  it('two compiles of the fixture with --weights twla and the same seed write byte-identical files', async () => {
    const [a, b] = [join(tmp, 'a'), join(tmp, 'b')];
    const runs = await Promise.all([compile(a), compile(b)]);
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const names = files(a);
    expect(files(b)).toEqual(names);
    for (const f of ['model.onnx', 'model.onnx.data', 'weights.bin', 'manifest.json', 'report.md', 'tokenizer.json']) expect(names).toContain(f);
    for (const f of names) {
      expect(statSync(join(b, f)).size, f).toBe(statSync(join(a, f)).size);
      expect(readFileSync(join(b, f)).equals(readFileSync(join(a, f))), `${f} differs`).toBe(true);
    }
    const m = JSON.parse(readFileSync(join(a, 'manifest.json'), 'utf8')) as ArtifactManifest;
    const pkg = (name: string) => (JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
    expect(m.producer).toMatchObject({ twlac: m.twlac, node: process.versions.node, onnxruntime: pkg('onnxruntime-node'), protobufjs: pkg('protobufjs') });
    expect(m.producer?.invocation).toMatchObject({
      model: MODELS.fp32,
      flags: { weights: 'twla', structure: 'kernel', format: 'tq1_g128_lat', acts: '16', rotate: true, gptq: true, xdomain: true },
      calibration: { file: TRAIN, samples: 2, seq: 64, seed: 3 },
    });
    expect((m.producer?.invocation as { calibration: { sha256: string } }).calibration.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m.method).toMatchObject({ weights: 'twla', calibrationSegments: 2, calibrationSeq: 64 });
  }, 1_200_000); // ~2 min on two idle cores; far longer on a loaded machine
});
