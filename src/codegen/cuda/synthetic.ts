// A manifest without weights: the tensor table a random ternary model of a given config
// would have (same names, dtypes, sizes and 64-byte alignment as src/artifact/build.ts), so
// the CUDA host program can synthesise the weights on the GPU (`--random SEED`) for shapes
// too large to ship (a LLaMA-2-7B-shaped model).
import { BLOCK_LINEARS } from '../../artifact/build.ts';
import { MANIFEST_VERSION, type ArtifactManifest, type BlockEntry, type LinearEntry, type TensorEntry } from '../../artifact/manifest.ts';
import type { ModelConfig } from '../../graph/model-config.ts';
import { linearShape } from '../../artifact/random.ts';
import { bitsPerWeight, CODE_PACKINGS, groupsPerRow, type TernaryFormat } from '../../formats/ternary.ts';
import type { DType } from '../../graph/tensor.ts';
import { WEIGHT_ALIGN } from '../../artifact/weights.ts';
import { llamaBlockProgram, llamaProgram, programFeatures } from '../../program/block-program.ts';

export function syntheticManifest(config: ModelConfig, format: TernaryFormat, actBits = 16): ArtifactManifest {
  const tensors: Record<string, TensorEntry> = {};
  let pos = 0;
  const add = (name: string, dtype: DType, dims: number[], bytes: number) => {
    pos += (WEIGHT_ALIGN - (pos % WEIGHT_ALIGN)) % WEIGHT_ALIGN;
    tensors[name] = { offset: pos, bytes, dtype, dims };
    pos += bytes;
  };
  const ternary = (prefix: string, role: LinearEntry['role'], rows: number, cols: number): LinearEntry => {
    const ng = groupsPerRow(format, cols);
    const codes = rows * ng * CODE_PACKINGS[format.packing].bytesPerGroup(format.group);
    add(`${prefix}.codes`, 'uint8', [codes], codes);
    add(`${prefix}.scales`, 'uint16', [rows * ng], rows * ng * 2);
    if (format.shift) add(`${prefix}.shifts`, 'uint16', [rows * ng], rows * ng * 2);
    return {
      name: prefix, role, rows, cols, format: format.id,
      codes: `${prefix}.codes`, scales: `${prefix}.scales`, shifts: format.shift ? `${prefix}.shifts` : undefined,
      bitsPerWeight: bitsPerWeight(format, rows, cols),
    };
  };
  add('embed', 'float16', [config.vocab, config.hidden], config.vocab * config.hidden * 2);
  const blocks: BlockEntry[] = [];
  for (let i = 0; i < config.layers; i++) {
    const p = `blocks.${i}`;
    add(`${p}.attn_norm`, 'float32', [config.hidden], config.hidden * 4);
    add(`${p}.mlp_norm`, 'float32', [config.hidden], config.hidden * 4);
    const lin = Object.fromEntries(
      BLOCK_LINEARS.map((r) => {
        const [rows, cols] = linearShape(config, r);
        return [r, ternary(`${p}.${r}`, r, rows, cols)];
      }),
    ) as Record<(typeof BLOCK_LINEARS)[number], LinearEntry>;
    const site = { bits: actBits, clip: 1 };
    blocks.push({ ...llamaBlockProgram(config.headDim), attnNorm: `${p}.attn_norm`, mlpNorm: `${p}.mlp_norm`, ...lin, acts: { attn: site, o: site, mlp: site, down: site } });
  }
  add('final_norm', 'float32', [config.hidden], config.hidden * 4);
  add('lm_head.weight', 'float16', [config.vocab, config.hidden], config.vocab * config.hidden * 2);
  const lmHead: LinearEntry = { name: 'lm_head', role: 'lm_head', rows: config.vocab, cols: config.hidden, format: 'float16', weight: 'lm_head.weight', bitsPerWeight: 16 };
  const manifest: ArtifactManifest = {
    kind: 'twlac-artifact',
    version: MANIFEST_VERSION,
    twlac: 'synthetic',
    source: { path: 'synthetic', inputs: ['input_ids'], outputs: ['logits'] },
    config,
    program: llamaProgram(config),
    features: [],
    weightsFile: 'weights.bin',
    tensors,
    embed: 'embed',
    finalNorm: 'final_norm',
    lmHead,
    blocks,
    method: { weights: 'random-on-device', format: format.id },
    bitsPerWeight: bitsPerWeight(format, 1, 1),
    files: { 'weights.bin': pos },
  };
  manifest.features = [...programFeatures(manifest).keys()];
  return manifest;
}
