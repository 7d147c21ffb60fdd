// Assemble an artifact (manifest.json + weights.bin) from an in-memory description of a
// quantised transformer. The compile pipeline and the random-model generator both go
// through here, so every runtime sees one layout.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodedBytes, storageBytes, type TernaryWeights } from '../formats/ternary.ts';
import { order2Mismatch, order2StorageBytes } from '../formats/order2.ts';
import { floatToHalf } from '../graph/tensor.ts';
import {
  MANIFEST_VERSION,
  type ActSite,
  type ArtifactManifest,
  type BlockEntry,
  type LinearEntry,
  type LinearRole,
} from './manifest.ts';
import type { ModelConfig } from '../graph/model-config.ts';
import { WeightsWriter } from './weights.ts';
import { programFeatures, type BlockProgram, type ModelProgram } from '../program/block-program.ts';

export interface ArtifactLinear {
  name: string;
  role: LinearRole;
  rows: number;
  cols: number;
  /** Ternary storage, or... */
  ternary?: TernaryWeights;
  /** The second plane of an order-2 linear (formats/order2.ts), with `ternary` its first. */
  order2?: TernaryWeights;
  /** ...a dense row-major [rows, cols] weight, stored as `denseDtype` (default float16). */
  dense?: Float32Array;
  denseDtype?: 'float16' | 'float32';
  bias?: Float32Array;
}

export interface ArtifactActSite {
  bits: number;
  clip: number;
  folded?: string;
  transform?: { l: number; r: number; C: Float64Array; B: Float64Array };
}

export type BlockLinearRole = Exclude<LinearRole, 'lm_head'>;
export const BLOCK_LINEARS: readonly BlockLinearRole[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];
export const ACT_SITES = ['attn', 'o', 'mlp', 'down'] as const;
export type ActSiteName = (typeof ACT_SITES)[number];

/** A block's program with q/k norm γ held as values (written as tensors by writeArtifact). */
export interface ArtifactBlock extends BlockProgram<Float32Array | null> {
  attnNorm: Float32Array | null;
  mlpNorm: Float32Array | null;
  /** LayerNorm β (program.norm 'layer'), null where there is none or it was folded. */
  attnNormBias?: Float32Array | null;
  mlpNormBias?: Float32Array | null;
  /** `gate` is absent in an ungated MLP (mlp.gated false). */
  linears: Omit<Record<BlockLinearRole, ArtifactLinear>, 'gate'> & { gate?: ArtifactLinear };
  acts: Record<ActSiteName, ArtifactActSite>;
}

export interface ArtifactModel {
  config: ModelConfig;
  program: ModelProgram;
  source: ArtifactManifest['source'];
  method: Record<string, unknown>;
  /** [vocab, hidden] */
  embed: Float32Array;
  /** Learned absolute positions [maxPositions, hidden] (GPT-2 wpe). */
  positionEmbed?: Float32Array;
  finalNorm: Float32Array | null;
  finalNormBias?: Float32Array | null;
  lmHead: ArtifactLinear;
  blocks: ArtifactBlock[];
}

export const TWLAC_VERSION = '0.1.0';

function toHalfBytes(a: ArrayLike<number>): Uint8Array {
  const h = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) h[i] = floatToHalf(a[i]);
  return new Uint8Array(h.buffer);
}

function f32Bytes(a: Float32Array | Float64Array): Uint8Array {
  const f = a instanceof Float32Array ? a : Float32Array.from(a);
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
}

/** Write `dir/weights.bin` and `dir/manifest.json`; returns the manifest. */
export function writeArtifact(dir: string, m: ArtifactModel, extraFiles: Record<string, number> = {}): ArtifactManifest {
  const w = new WeightsWriter(join(dir, 'weights.bin'));
  const linear = (prefix: string, l: ArtifactLinear): LinearEntry => {
    const e: LinearEntry = { name: l.name, role: l.role, rows: l.rows, cols: l.cols, format: '', bitsPerWeight: 0 };
    let bytes: number;
    if (l.ternary) {
      const t = l.ternary;
      if (t.rows !== l.rows || t.cols !== l.cols) throw new Error(`${l.name}: ternary shape mismatch`);
      e.format = t.format.id;
      e.codes = `${prefix}.codes`;
      e.scales = `${prefix}.scales`;
      w.add(e.codes, 'uint8', [t.codes.byteLength], t.codes);
      w.add(e.scales, 'uint16', [t.scales.length], new Uint8Array(t.scales.buffer, t.scales.byteOffset, t.scales.byteLength));
      if (t.shifts) {
        e.shifts = `${prefix}.shifts`;
        w.add(e.shifts, 'uint16', [t.shifts.length], new Uint8Array(t.shifts.buffer, t.shifts.byteOffset, t.shifts.byteLength));
      }
      bytes = encodedBytes(t);
      let declared = storageBytes(t.format, t.rows, t.cols);
      if (l.order2) {
        const p = l.order2;
        const why = order2Mismatch(t, p);
        if (why) throw new Error(`${l.name}: ${why}`);
        e.order2 = { format: p.format.id, codes: `${prefix}.o2.codes`, scales: `${prefix}.o2.scales` };
        w.add(e.order2.codes, 'uint8', [p.codes.byteLength], p.codes);
        w.add(e.order2.scales, 'uint16', [p.scales.length], new Uint8Array(p.scales.buffer, p.scales.byteOffset, p.scales.byteLength));
        bytes += encodedBytes(p);
        declared = order2StorageBytes(t.format, t.rows, t.cols);
      }
      if (declared !== bytes) throw new Error(`${l.name}: wrote ${bytes} bytes, format ${t.format.id}${l.order2 ? ' with its order-2 plane' : ''} declares ${declared}`);
    } else if (l.dense) {
      const dt = l.denseDtype ?? 'float16';
      e.format = dt;
      e.weight = `${prefix}.weight`;
      const b = dt === 'float16' ? toHalfBytes(l.dense) : f32Bytes(l.dense);
      w.add(e.weight, dt, [l.rows, l.cols], b);
      bytes = b.byteLength;
    } else {
      throw new Error(`${l.name}: linear has neither ternary nor dense weights`);
    }
    if (l.bias) {
      e.bias = `${prefix}.bias`;
      w.add(e.bias, 'float32', [l.rows], f32Bytes(l.bias));
      bytes += l.bias.byteLength;
    }
    e.bitsPerWeight = (bytes * 8) / (l.rows * l.cols);
    return e;
  };
  const norm = (name: string, g: Float32Array | null): string | null => {
    if (!g) return null;
    w.add(name, 'float32', [g.length], f32Bytes(g));
    return name;
  };
  const site = (prefix: string, s: ArtifactActSite): ActSite => {
    const out: ActSite = { bits: s.bits, clip: s.clip, ...(s.folded ? { folded: s.folded } : {}) };
    if (s.transform) {
      const { l, r, C, B } = s.transform;
      out.transform = { l, r, C: `${prefix}.C`, B: `${prefix}.B` };
      w.add(out.transform.C, 'float32', [l, l], f32Bytes(C));
      w.add(out.transform.B, 'float32', [r, r], f32Bytes(B));
    }
    return out;
  };

  const { config } = m;
  w.add('embed', 'float16', [config.vocab, config.hidden], toHalfBytes(m.embed));
  const blocks: BlockEntry[] = m.blocks.map((b, i) => {
    const p = `blocks.${i}`;
    const lin = Object.fromEntries(BLOCK_LINEARS.flatMap((r) => (b.linears[r] ? [[r, linear(`${p}.${r}`, b.linears[r])]] : []))) as Omit<Record<BlockLinearRole, LinearEntry>, 'gate'> & { gate?: LinearEntry };
    const qk = b.attention.qkNorm;
    return {
      attention: {
        ...b.attention,
        qkNorm: qk && {
          ...(qk.span ? { span: qk.span } : {}),
          ...(qk.kind ? { kind: qk.kind } : {}),
          q: { eps: qk.q.eps, gamma: norm(`${p}.q_norm`, qk.q.gamma) },
          k: { eps: qk.k.eps, gamma: norm(`${p}.k_norm`, qk.k.gamma) },
        },
      },
      mlp: { ...b.mlp },
      residualScale: { ...b.residualScale },
      ...(b.preNorm === false ? { preNorm: false } : {}),
      ...(b.postNorm
        ? {
            postNorm: {
              attn: { eps: b.postNorm.attn.eps, gamma: norm(`${p}.attn_post_norm`, b.postNorm.attn.gamma) },
              mlp: { eps: b.postNorm.mlp.eps, gamma: norm(`${p}.mlp_post_norm`, b.postNorm.mlp.gamma) },
            },
          }
        : {}),
      attnNorm: norm(`${p}.attn_norm`, b.attnNorm),
      mlpNorm: norm(`${p}.mlp_norm`, b.mlpNorm),
      ...(b.attnNormBias ? { attnNormBias: norm(`${p}.attn_norm_bias`, b.attnNormBias) } : {}),
      ...(b.mlpNormBias ? { mlpNormBias: norm(`${p}.mlp_norm_bias`, b.mlpNormBias) } : {}),
      ...lin,
      acts: {
        attn: site(`${p}.acts.attn`, b.acts.attn),
        o: site(`${p}.acts.o`, b.acts.o),
        mlp: site(`${p}.acts.mlp`, b.acts.mlp),
        down: site(`${p}.acts.down`, b.acts.down),
      },
    };
  });
  const finalNorm = norm('final_norm', m.finalNorm);
  const finalNormBias = m.finalNormBias ? norm('final_norm_bias', m.finalNormBias) : undefined;
  if (m.positionEmbed) w.add('position_embed', 'float32', [m.positionEmbed.length / config.hidden, config.hidden], f32Bytes(m.positionEmbed));
  const lmHead = linear('lm_head', m.lmHead);
  const total = w.close();

  let qBits = 0;
  let qWeights = 0;
  for (const b of blocks) {
    for (const r of BLOCK_LINEARS) {
      const l = b[r];
      if (!l) continue;
      qBits += l.bitsPerWeight * l.rows * l.cols;
      qWeights += l.rows * l.cols;
    }
  }
  const manifest: ArtifactManifest = {
    kind: 'twlac-artifact',
    version: MANIFEST_VERSION,
    twlac: TWLAC_VERSION,
    source: m.source,
    config,
    program: m.program,
    features: [],
    weightsFile: 'weights.bin',
    tensors: w.entries,
    embed: 'embed',
    ...(m.positionEmbed ? { positionEmbed: 'position_embed' } : {}),
    finalNorm,
    ...(finalNormBias ? { finalNormBias } : {}),
    lmHead,
    blocks,
    method: m.method,
    bitsPerWeight: qWeights ? qBits / qWeights : 0,
    files: { 'weights.bin': total, ...extraFiles },
  };
  manifest.features = [...programFeatures(manifest).keys()];
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 1));
  return manifest;
}
