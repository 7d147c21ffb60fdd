// The whole-model path ILA-AMP's NLL measurements took before they were streamed (the
// oracle of test/calib/amp-nll.test.ts, and the "old" side of bench/amp-stream.ts): the knob
// model (every block's weights) in one onnxruntime session, every setting a full forward
// over batches of 4 segments.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { addTokenNlls, ampKnobModel, knobFeeds, logitsOutput, type AmpSite } from '../../src/calib/amp-nll.ts';
import { batchTokenFeeds } from '../../src/calib/stream.ts';
import { describeInputs } from '../../src/eval/ort-session.ts';
import type { Model } from '../../src/graph/ir.ts';
import { saveModel } from '../../src/graph/onnx.ts';

export async function wholeModelNlls(model: Model, sites: AmpSite[], clips: Map<string, Map<number, number>>, segments: Int32Array[], configs: number[][]): Promise<number[]> {
  const { model: m, knobs } = ampKnobModel(model, sites);
  const dir = mkdtempSync(join(tmpdir(), 'twlac-amp-oracle-'));
  try {
    saveModel(m, join(dir, 'amp.onnx'));
    const session = await ort.InferenceSession.create(join(dir, 'amp.onnx'), { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
    const knobNames = new Set(knobs.flatMap((k) => [k.levels.name, k.clip.name]));
    const iface = describeInputs(join(dir, 'amp.onnx'), session, { ignore: (n) => knobNames.has(n) });
    const out: number[] = [];
    for (const c of configs) {
      const acc = { sum: 0, n: 0 };
      for (let k = 0; k * 4 < segments.length; k++) {
        const r = await session.run({ ...batchTokenFeeds(iface, segments, 4, k), ...knobFeeds(knobs, clips, c) }, [logitsOutput(m).name]);
        addTokenNlls(r[logitsOutput(m).name], segments.slice(k * 4, k * 4 + 4), acc);
      }
      out.push(acc.sum / acc.n);
    }
    await session.release();
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

