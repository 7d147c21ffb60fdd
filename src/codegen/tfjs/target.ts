// `--target tfjs`: out/tfjs/model.json (a TF.js GraphModel) and its weight shards, translated
// from out/model.onnx, the graph stock onnxruntime runs. Translating that graph, rather than
// rebuilding the block program, means the TF.js model computes exactly what every other
// backend is tested against (online transforms, activation quantisers, whatever the source
// export's attention looks like) with no description of the block of its own. Ternary
// linears keep the bytes of weights.bin: the MatMulNBits node names its linear, whose
// codes, fp16 scales and fp16 shifts go into the shards unchanged.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ArtifactManifest, LinearEntry } from '../../artifact/manifest.ts';
import { readArtifact, tensorBytes } from '../../artifact/weights.ts';
import { parseFormatId, type TernaryWeights } from '../../formats/ternary.ts';
import { loadModel } from '../../graph/onnx.ts';
import { linearIdOfQweight } from '../../lower/ternary-linear.ts';
import { graphModelFiles } from './graphdef.ts';
import { translateToTf, type TernaryLookup } from './translate.ts';

/** The packed weights of every ternary linear in the artifact, by linear id (its tensors are `${id}.codes` etc., artifact/build.ts). */
function ternaryLinears(manifest: ArtifactManifest, weights: Uint8Array): Map<string, NonNullable<ReturnType<TernaryLookup>>> {
  const all: LinearEntry[] = [manifest.lmHead, ...manifest.blocks.flatMap((b) => [b.q, b.k, b.v, b.o, ...(b.gate ? [b.gate] : []), b.up, b.down])];
  const fp16 = (name: string) => {
    const b = tensorBytes(manifest, weights, name).slice();
    return new Uint16Array(b.buffer, 0, b.byteLength / 2);
  };
  const out = new Map<string, NonNullable<ReturnType<TernaryLookup>>>();
  // An order-2 linear's second plane is a MatMulNBits of its own (lower/ternary-linear.ts).
  const planes = all.flatMap((e) => [{ e, p: e }, ...(e.order2 ? [{ e, p: e.order2 }] : [])]);
  for (const { e, p } of planes) {
    if (!p.codes || !p.scales) continue;
    const shifts = 'shifts' in p ? p.shifts : undefined;
    const w: TernaryWeights = {
      format: parseFormatId(p.format),
      rows: e.rows,
      cols: e.cols,
      codes: tensorBytes(manifest, weights, p.codes),
      scales: fp16(p.scales),
      shifts: shifts ? fp16(shifts) : undefined,
    };
    out.set(p.codes.replace(/\.codes$/, ''), { weights: w, names: { codes: p.codes, scales: p.scales, shifts } });
  }
  return out;
}

export async function emitTfjsTarget(dir: string, manifest: ArtifactManifest): Promise<Record<string, number>> {
  const model = loadModel(join(dir, manifest.onnx?.file ?? 'model.onnx'));
  const linears = ternaryLinears(manifest, readArtifact(dir).weights);
  const lookup: TernaryLookup = (node) => {
    const id = node.input(1) && linearIdOfQweight(node.input(1)!.name);
    return id === undefined ? undefined : linears.get(id);
  };
  const t = translateToTf(model, lookup);
  const { modelJson, shards } = graphModelFiles(t.graph, { inputs: t.inputs, outputs: t.outputs }, { generatedBy: `twlac ${manifest.twlac}`, convertedBy: 'twlac --target tfjs' });
  mkdirSync(join(dir, 'tfjs'), { recursive: true });
  const files: Record<string, number> = {};
  writeFileSync(join(dir, 'tfjs', 'model.json'), modelJson);
  files['tfjs/model.json'] = Buffer.byteLength(modelJson);
  for (const s of shards) {
    writeFileSync(join(dir, 'tfjs', s.file), s.bytes);
    files[`tfjs/${s.file}`] = s.bytes.byteLength;
  }
  return files;
}
