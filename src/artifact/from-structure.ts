// Build the runtimes' artifact model from the compiled graph's recognised structure and
// the passes' per-linear / per-site state. This is where the block program
// (src/program/block-program.ts) is derived, once, for every backend.
import { UserError } from '../errors.ts';
import { biasVector, constTensor, weightRows, type Block, type Linear, type Norm, type TransformerStructure } from '../graph/recognize.ts';
import type { AttentionProgram, ModelProgram } from '../program/block-program.ts';
import type { CompileContext, SiteState } from '../passes/context.ts';
import { ACT_SITES, BLOCK_LINEARS, type ArtifactActSite, type ArtifactBlock, type ArtifactLinear, type ArtifactModel, type ActSiteName } from './build.ts';

function gammaOf(n: Norm | undefined, folded: boolean): Float32Array | null {
  if (!n) return null;
  if (folded || !n.gamma) return null;
  return constTensor(n.gamma)!.toFloat32();
}

/** LayerNorm β (null when folded into the next linears' biases, or absent). */
function betaOf(n: Norm | undefined, folded: boolean): Float32Array | null {
  if (!n || folded || !n.beta) return null;
  return constTensor(n.beta)!.toFloat32();
}

export function artifactModel(ctx: CompileContext, sourcePath: string): ArtifactModel {
  const s = ctx.structure;
  const linear = (l: Linear): ArtifactLinear => {
    const st = ctx.linears.get(l);
    const base = { name: l.weight.name || l.node.name, role: l.role!, rows: l.outFeatures, cols: l.inFeatures, bias: biasVector(l) };
    if (!st?.ternary) return { ...base, dense: weightRows(l), denseDtype: 'float16' };
    return st.order2 ? { ...base, ternary: st.ternary, order2: st.order2 } : { ...base, ternary: st.ternary };
  };
  const siteOf = (block: number, name: ActSiteName): SiteState | undefined => ctx.sites.find((x) => x.group.block === block && x.group.site === name);
  const act = (st: SiteState | undefined): ArtifactActSite => ({
    bits: st?.act?.bits ?? 16,
    clip: st?.act?.clip ?? 1,
    transform: st?.transform ? { ...st.transform } : undefined,
    folded: st?.fused ? `I⊗B (${st.fused.r}×${st.fused.r} per head) folded into ${st.fused.into}_proj` : undefined,
  });
  const blocks: ArtifactBlock[] = s.blocks.map((b) => ({
    attention: attentionProgram(b),
    mlp: { activation: b.activation, gated: !!b.gate },
    residualScale: { ...b.residualScale },
    ...(b.attnNorm ? {} : { preNorm: false }),
    ...(b.postNorm ? { postNorm: { attn: ownNorm(b.postNorm.attn), mlp: ownNorm(b.postNorm.mlp) } } : {}),
    attnNorm: gammaOf(b.attnNorm, !!siteOf(b.index, 'attn')?.gammaFolded),
    mlpNorm: gammaOf(b.mlpNorm, !!siteOf(b.index, 'mlp')?.gammaFolded),
    attnNormBias: betaOf(b.attnNorm, !!siteOf(b.index, 'attn')?.gammaFolded),
    mlpNormBias: betaOf(b.mlpNorm, !!siteOf(b.index, 'mlp')?.gammaFolded),
    linears: Object.fromEntries(BLOCK_LINEARS.flatMap((r) => (b[r] ? [[r, linear(b[r])]] : []))) as ArtifactBlock['linears'],
    acts: Object.fromEntries(ACT_SITES.map((a) => [a, act(siteOf(b.index, a))])) as ArtifactBlock['acts'],
  }));
  const table = constTensor(s.embedding.table);
  if (!table) throw new UserError('the embedding table is not a constant');
  return {
    config: s.config,
    program: modelProgram(s),
    source: { path: sourcePath, inputs: s.model.graph.inputs.map((v) => v.name), outputs: s.model.graph.outputs.map((v) => v.name) },
    method: {},
    embed: table.toFloat32(),
    ...(s.positionEmbedding ? { positionEmbed: constTensor(s.positionEmbedding.table)!.toFloat32() } : {}),
    finalNorm: gammaOf(s.finalNorm, false),
    finalNormBias: betaOf(s.finalNorm, false),
    lmHead: linear(s.lmHead),
    blocks,
  };
}

function modelProgram(s: TransformerStructure): ModelProgram {
  const c = s.config;
  const rotaryDim = s.rope.rotaryDim ?? c.headDim;
  const b0 = s.blocks[0];
  // recognize() refuses a model that mixes RMSNorm and LayerNorm, so its first norm names the kind.
  const n0 = b0.attnNorm ?? b0.postNorm?.attn ?? s.finalNorm;
  return {
    residual: b0.parallel ? 'parallel' : 'sequential',
    norm: n0 && !n0.rms ? 'layer' : 'rms',
    embedScale: s.embedScale,
    logitScale: s.logitScale,
    ...(s.logitSoftcap !== undefined ? { logitSoftcap: s.logitSoftcap } : {}),
    rope: { kind: rotaryDim === 0 ? 'none' : 'rotate-half', theta: c.ropeTheta, rotaryDim },
  };
}

/** A norm with its own ε and an unfolded γ (q/k norms, post-norms: no linear reads them, so nothing folds them). */
function ownNorm(n: Norm): { gamma: Float32Array | null; eps: number } {
  if (!n.rms) throw new UserError(`the ${n.kind} ${n.role ?? ''} norm of block ${n.block} subtracts the mean: the runtimes support RMSNorm there only`);
  return { gamma: n.gamma ? constTensor(n.gamma)!.toFloat32() : null, eps: n.eps };
}

function attentionProgram(b: Block): AttentionProgram<Float32Array | null> {
  const a = b.attention;
  return {
    scale: a.scale!,
    window: a.window ?? null,
    qkNorm: b.qkNorm
      ? {
          q: { gamma: b.qkNorm.q.gamma, eps: b.qkNorm.q.eps },
          k: { gamma: b.qkNorm.k.gamma, eps: b.qkNorm.k.eps },
          // absent span 'head' and kind 'rms': manifests written before these fields read the same
          ...(b.qkNorm.span !== 'head' ? { span: b.qkNorm.span } : {}),
          ...(b.qkNorm.kind !== 'rms' ? { kind: b.qkNorm.kind } : {}),
        }
      : null,
    softcap: a.softcap ?? null,
    ...(b.ropeTheta !== undefined ? { ropeTheta: b.ropeTheta } : {}),
  };
}
