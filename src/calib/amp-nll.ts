// ILA-AMP's calibration NLLs (METHOD §3), streamed block by block. Every measured setting
// (bits per block) equals the reference setting (every block at 8 bits) before some block s
// and may differ from s on, so the setting needs only stages s..L of the model, run on the
// reference's activations entering block s:
//
//   the model is cut into one stage per block plus a last stage (final norm, lm_head) that
//   ends in the logits (calib/stream.ts cuts them); its quantisers read their levels and clip
//   ratios from graph inputs ("knobs"), so one stage's session serves every setting;
//   a window of settings starts from the reference's activations entering block w (the
//   cursor); stage j's session is opened once per window and runs every distinct prefix of
//   the window's settings (settings that agree on blocks ≤ j share their activations: the
//   neighbour pair (i−1, i) at (b′, b) runs block i−1 once with the single "block i−1 at b′");
//   the reference prefix runs along until the window is full, and its activations then start
//   the next window;
//   the last stage turns each setting's hidden states into logits one batch at a time
//   (default one segment: seq × vocab floats resident, not those of every token) and sums
//   the token NLLs.
//
// So one block's weights are in onnxruntime at a time, and what stays between stages is the
// activations of the window's settings: at most `stateBudgetBytes` (default 1 GiB; a window
// always takes every setting that starts at its first block). Work: a setting starting at
// block s runs L − s + 1 stages instead of the whole model. The NLLs equal the whole-model
// session's to float rounding (the stages compute what the whole model computes: bit for bit
// on fp32 exports; fp16 exports hold the stream in fp16 between stages, see calib/stream.ts).
import * as ort from 'onnxruntime-node';
import { tokenNll } from '../eval/perplexity.ts';
import { describeInputMetadata } from '../eval/ort-session.ts';
import type { GraphBuilder } from '../graph/builder.ts';
import { cloneModel } from '../graph/clone.ts';
import type { Model, Value } from '../graph/ir.ts';
import { silentProgress, type Progress } from '../graph/pass.ts';
import { Rewriter } from '../graph/rewriter.ts';
import { floatToHalf, halfToFloat } from '../graph/tensor.ts';
import type { InputGroup } from '../graph/recognize.ts';
import { emitActQuantWith } from '../quant/act-quant.ts';
import type { Cut } from '../graph/extract.ts';
import { batchTokenFeeds, blockEnd, carryHalfAsFloat, cutStages, openStage, type StreamStructure } from './stream.ts';

/** An activation site whose quantiser the NLL runs set: its id and its linears' input group. */
export interface AmpSite {
  id: string;
  group: InputGroup;
  /** The dtype its activations run in. */
  dtype: 'float32' | 'float16';
}

/** The graph inputs that set one site's quantiser. */
export interface AmpKnob {
  site: AmpSite;
  levels: Value;
  clip: Value;
}

/**
 * A copy of the model (same weight tensors) with a quantiser before every site's linears
 * whose levels (2^b − 1) and clip ratio are graph inputs.
 */
export function ampKnobModel(model: Model, sites: readonly AmpSite[]): { model: Model; map: Map<Value, Value>; knobs: AmpKnob[] } {
  const { model: m, map } = cloneModel(model);
  const rw = new Rewriter(m.graph);
  const b: GraphBuilder = rw.b;
  const knobs = sites.map((site) => {
    const levels = b.input(`twlac.amp.${site.id}.levels`, { dtype: site.dtype, shape: [] });
    const clip = b.input(`twlac.amp.${site.id}.clip`, { dtype: site.dtype, shape: [] });
    const nodes = site.group.linears.map((l) => map.get(l.node.output(0))!.producer()!);
    rw.interpose(nodes, (x, before) => emitActQuantWith(b, x, levels, clip, { before, dtype: site.dtype, opset: m.opset(''), prefix: `${site.id}.ampq` }));
    return { site, levels, clip };
  });
  return { model: m, map, knobs };
}

/** The knob feeds of one setting (bits per block); `clips` gives each site's clip ratio per bit-width. */
export function knobFeeds(knobs: readonly AmpKnob[], clips: Map<string, Map<number, number>>, config: readonly number[]): Record<string, ort.Tensor> {
  const scalar = (dtype: 'float32' | 'float16', v: number) =>
    dtype === 'float32' ? new ort.Tensor('float32', Float32Array.of(v), []) : new ort.Tensor('float16', Uint16Array.of(floatToHalf(v)), []);
  const feeds: Record<string, ort.Tensor> = {};
  for (const k of knobs) {
    const bits = config[k.site.group.block];
    feeds[k.levels.name] = scalar(k.site.dtype, 2 ** bits - 1);
    feeds[k.clip.name] = scalar(k.site.dtype, clips.get(k.site.id)!.get(bits)!);
  }
  return feeds;
}

/** The logits output of a model: the one named logits, else the first. */
export function logitsOutput(model: Model): Value {
  return model.graph.outputs.find((v) => v.name === 'logits') ?? model.graph.outputs[0];
}

/** Mean NLL of each segment's next tokens in one batch's logits [rows, seq, vocab], added to `acc`. */
export function addTokenNlls(logits: ort.Tensor, ids: readonly Int32Array[], acc: { sum: number; n: number }): void {
  const [rows, seq, vocab] = logits.dims;
  const lf = logits.type === 'float32' ? (logits.data as Float32Array) : Float32Array.from(logits.data as Uint16Array, halfToFloat);
  for (let r = 0; r < rows; r++) {
    for (let p = 0; p < seq - 1; p++) {
      acc.sum += tokenNll(lf, (r * seq + p) * vocab, vocab, ids[r][p + 1]);
      acc.n++;
    }
  }
}

export interface AmpNllOptions {
  progress?: Progress;
  /** Bytes of activations the windows may hold between stages (default 1 GiB). */
  stateBudgetBytes?: number;
  /** Segments per onnxruntime run (default 1: the logits of one segment resident at a time). */
  batch?: number;
}

/** Per batch, the values later stages read. */
type State = Map<Value, ort.Tensor>[];

/** Settings that agree on the blocks run so far, and their activations. */
interface Branch {
  state: State;
  configs: number[];
}

const stateBytes = (s: State) => s.reduce((a, m) => a + [...m.values()].reduce((b, t) => b + (t.data as ArrayBufferView).byteLength, 0), 0);

/**
 * The calibration NLL of each setting in `configs` (bits per block; `reference` is the
 * width every setting takes before its first differing block), on `segments`.
 */
export async function streamedNlls(
  model: Model,
  structure: StreamStructure,
  sites: readonly AmpSite[],
  clips: Map<string, Map<number, number>>,
  segments: Int32Array[],
  configs: readonly number[][],
  reference: number,
  opts: AmpNllOptions = {},
): Promise<number[]> {
  const progress = opts.progress ?? silentProgress;
  const budget = opts.stateBudgetBytes ?? 2 ** 30;
  const batch = opts.batch ?? 1;
  const L = structure.blocks.length;
  const { model: m, map, knobs } = ampKnobModel(model, sites);
  const stages = cutStages(m, [...structure.blocks.map((b) => blockEnd(b).map((v) => map.get(v)!)), [logitsOutput(m)]], map.get(structure.embedding.ids)!);
  const knobNames = new Set(knobs.flatMap((k) => [k.levels.name, k.clip.name]));
  const meta = m.graph.inputs
    .filter((v) => !knobNames.has(v.name))
    .map((v) => ({ name: v.name, isTensor: true as const, type: (v.type?.dtype ?? 'float32') as ort.Tensor.Type, shape: (v.type?.shape ?? []).map((d) => d ?? 'unk') }));
  const iface = describeInputMetadata('the model', meta, [], { requirePresent: false });
  const batches = Math.ceil(segments.length / batch);
  const tokens = Array.from({ length: batches }, (_, k) => batchTokenFeeds(iface, segments, batch, k));
  // A stage reads the knobs of its own block only, so a setting's prefix decides its activations.
  const stageKnobs = stages.map((st, j) => {
    const mine = knobs.filter((k) => st.fed.includes(k.levels) || st.fed.includes(k.clip));
    for (const k of mine) if (k.site.group.block !== j) throw new Error(`ILA-AMP: stage ${j} reads the quantiser of block ${k.site.group.block}'s site ${k.site.id}`);
    return mine;
  });
  const laterReads = stages.map((_, j) => new Set(stages.slice(j + 1).flatMap((s) => s.kept)));

  // Values between stages that the model holds in fp16, carried as fp32 (see carryHalfAsFloat);
  // learnt from a stage's outputs the first time it opens.
  const half = new Set<Value>();
  const open = async (j: number, example: Map<Value, ort.Tensor>, outputs: Value[]) => {
    for (;;) {
      const widen = (cut: Cut) => carryHalfAsFloat(cut, stages[j].kept.filter((v) => half.has(v)), outputs.filter((v) => half.has(v)));
      const session = await openStage(m, stages[j], example, outputs, widen);
      const found = j < L ? outputs.filter((v) => !half.has(v) && session.outputMetadata.some((x) => x.name === v.name && x.isTensor && x.type === 'float16')) : [];
      if (!found.length) return session;
      for (const v of found) half.add(v);
      await session.release();
    }
  };
  const start = configs.map((c) => {
    const s = c.findIndex((b) => b !== reference);
    return s < 0 ? L : s;
  });
  const order = configs.map((_, i) => i).sort((a, b) => start[a] - start[b] || a - b);
  const nll = new Array<number>(configs.length).fill(NaN);
  progress.start('ILA-AMP sensitivities', configs.length);

  let next = 0;
  let cursor: { block: number; state: State } = { block: 0, state: tokens.map(() => new Map()) };
  while (next < order.length) {
    const w = cursor.block;
    // The reference prefix's activations entering block j, while the window still takes settings.
    let ref: State | undefined = cursor.state;
    let branches: Branch[] = [];
    for (let j = w; j <= L && (ref || branches.length); j++) {
      if (ref) {
        const live = branches.reduce((a, b) => a + b.configs.length, 0);
        const per = stateBytes(ref);
        const admitted: number[] = [];
        while (next < order.length && start[order[next]] === j && (j === w || (live + admitted.length + 2) * per <= budget)) admitted.push(order[next++]);
        if (admitted.length) branches.push({ state: ref, configs: admitted });
        if (next < order.length && start[order[next]] === j) cursor = { block: j, state: ref };
        if (next >= order.length || start[order[next]] === j) ref = undefined;
      }
      const stage = stages[j];
      const example = ref?.[0] ?? branches[0].state[0];
      const outputs = j < L ? stage.passes : [logitsOutput(m)];
      const session = await open(j, example, outputs);
      try {
        // Stage j over every batch for one setting's prefix; `each` takes a batch's outputs.
        const runStage = async (state: State, config: readonly number[], each: (out: Map<Value, ort.Tensor>, k: number) => void): Promise<void> => {
          const knob = knobFeeds(stageKnobs[j], clips, config);
          for (let k = 0; k < batches; k++) {
            const feeds: Record<string, ort.Tensor> = {};
            for (const v of stage.fed) feeds[v.name] = knob[v.name] ?? tokens[k][v.name];
            for (const v of stage.kept) feeds[v.name] = state[k].get(v)!;
            const r = await session.run(feeds);
            each(new Map(outputs.map((v) => [v, r[v.name]])), k);
          }
        };
        // The activations after stage j: its outputs, and what later stages read of the earlier ones.
        const advance = async (state: State, config: readonly number[]): Promise<State> => {
          const out: State = [];
          await runStage(state, config, (kept, k) => {
            for (const [v, t] of state[k]) if (laterReads[j].has(v)) kept.set(v, t);
            out.push(kept);
          });
          return out;
        };
        const grown: Branch[] = [];
        for (const br of branches) {
          const byBits = new Map<number, number[]>();
          for (const c of br.configs) byBits.set(configs[c][j] ?? reference, [...(byBits.get(configs[c][j] ?? reference) ?? []), c]);
          for (const cs of byBits.values()) {
            if (j < L) {
              grown.push({ state: await advance(br.state, configs[cs[0]]), configs: cs });
              continue;
            }
            // The last stage: each batch's logits become token NLLs at once.
            const acc = { sum: 0, n: 0 };
            await runStage(br.state, configs[cs[0]], (out, k) => addTokenNlls(out.get(outputs[0])!, segments.slice(k * batch, (k + 1) * batch), acc));
            for (const c of cs) {
              nll[c] = acc.sum / acc.n;
              progress.tick(1, configs[c].join(','));
            }
          }
          // Its activations are spent (the reference keeps its own handle).
          br.state = [];
        }
        branches = grown;
        if (ref) ref = await advance(ref, new Array(L).fill(reference));
      } finally {
        await session.release();
      }
    }
  }
  progress.done();
  return nll;
}
