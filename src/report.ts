// out/report.md: a short human summary of what was compiled, from the manifest alone
// (report-html.ts draws the same facts as charts).
import type { ActSite, ArtifactManifest, BlockEntry, LinearEntry } from './artifact/manifest.ts';
import { ACT_SITES, BLOCK_LINEARS, type ActSiteName, type BlockLinearRole } from './artifact/build.ts';

export interface ReportInfo {
  /** Wall time of the whole compile, load and write included. */
  seconds: number;
  notes?: string[];
}

/** The activation site that feeds a block linear. */
export function siteOf(b: BlockEntry, role: BlockLinearRole): ActSite {
  return b.acts[linearSite[role]];
}
const linearSite: Record<BlockLinearRole, ActSiteName> = { q: 'attn', k: 'attn', v: 'attn', o: 'o', gate: 'mlp', up: 'mlp', down: 'down' };

/**
 * What mixed precision did, in one sentence, or undefined where activations were not
 * searched: ILA-AMP may find one width best for every block, and then nothing is mixed.
 */
export function ampSummary(m: ArtifactManifest): string | undefined {
  const acts = m.method.acts as { kind: string; budget?: number } | undefined;
  if (acts?.kind !== 'mp') return undefined;
  const bits = new Set(m.blocks.flatMap((b) => ACT_SITES.map((s) => b.acts[s].bits)));
  if (bits.size === 1) return `ILA-AMP chose ${[...bits][0]} bits at every site of every block under the mean budget of ${acts.budget}: nothing is mixed.`;
  const per = m.blocks.map((b) => b.acts.attn.bits);
  return `ILA-AMP mixed ${[...bits].sort((a, b) => a - b).join(', ')} bits under the mean budget of ${acts.budget} (blocks: ${per.join(' ')}).`;
}

const fmt = (x: number, d = 3) => x.toFixed(d);

function table(head: string[], rows: (string | number)[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function renderReport(m: ArtifactManifest, info: ReportInfo): string {
  const c = m.config;
  const lin: LinearEntry[] = m.blocks.flatMap((b) => BLOCK_LINEARS.flatMap((r) => b[r] ?? []));
  const params = lin.reduce((a, l) => a + l.rows * l.cols, 0);
  const lines: string[] = [];
  lines.push(`# twlac report`, '');
  lines.push(`Source: \`${m.source.path}\` (inputs ${m.source.inputs.join(', ')}; outputs ${m.source.outputs.join(', ')})`, '');
  lines.push(
    `Model: ${c.arch}, ${c.layers} layers, hidden ${c.hidden}, ${c.heads} heads / ${c.kvHeads} KV heads of ${c.headDim}, ` +
      `intermediate ${c.intermediate}, vocab ${c.vocab}, RoPE θ ${c.ropeTheta}, norm ε ${c.normEps}.`,
    '',
  );
  lines.push(`Method: \`${JSON.stringify(m.method)}\``, '');
  lines.push('## Bits per weight (from bytes written)', '');
  const rows: (string | number)[][] = [
    ['weights.bin (CUDA / WGSL runtimes)', `${fmt(m.bitsPerWeight)}`, `${params.toLocaleString('en-US')} weights in ${lin.length} linears`],
  ];
  if (m.countedBitsPerWeight !== undefined) {
    rows.push(['reference structure, counted', fmt(m.countedBitsPerWeight), 'codes + group masks + salient indices + fp16 parameters; no packed writer: stored dense in both files']);
  }
  if (m.onnx) {
    const ops = [...new Set(Object.values(m.onnx.linears).map((l) => l.op))].join(', ');
    rows.push([`${m.onnx.file} (onnxruntime)`, fmt(m.onnx.bitsPerWeight), ops.includes('MatMulNBits') ? '2-bit codes + float scales (+ zero points)' : ops]);
  }
  lines.push(table(['artifact', 'bits/weight', 'what'], rows), '');
  lines.push('Embeddings and the lm_head stay dense (fp16 in weights.bin, source precision in model.onnx).', '');
  if (m.eval) {
    const e = m.eval;
    lines.push('## Perplexity against bits', '');
    lines.push(`Held-out text \`${e.text}\` (it must not have been used for calibration or any search): ${e.windows} windows of ${e.windowSize} tokens, onnxruntime, EVAL.md protocol.`, '');
    lines.push(table(['model', 'bits/weight', 'PPL'], e.points.map((p) => [pointLabel[p.model], fmt(p.bitsPerWeight), fmt(p.ppl)])), '');
  }
  const amp = ampSummary(m);
  if (amp) lines.push('## Activation precision', '', amp, '');
  lines.push('## Linears', '');
  lines.push('Errors are relative squared errors: weight ‖W − Ŵ‖²/‖W‖², output ‖(W − Ŵ)Xᵀ‖²/‖WXᵀ‖² on the calibration inputs (on an even row sample where marked).', '');
  lines.push(
    table(
      ['linear', 'shape', 'format', 'bits/w (weights.bin)', 'bits/w (onnx)', 'weight error', 'output error', 'act bits', 'transform'],
      m.blocks.flatMap((b, i) =>
        BLOCK_LINEARS.filter((r) => b[r]).map((r) => {
          const l = b[r]!;
          const site = siteOf(b, r);
          const on = m.onnx?.linears[`blocks.${i}.${r}`];
          const err = m.errors?.[`blocks.${i}.${r}`];
          return [
            `blocks.${i}.${r}`,
            `${l.rows}×${l.cols}`,
            l.order2 ? `${l.format} + ${l.order2.format} (order 2)` : l.format,
            fmt(l.bitsPerWeight),
            on ? fmt(on.bitsPerWeight) : '-',
            err ? err.weight.toExponential(2) : '-',
            err?.output !== undefined ? err.output.toExponential(2) + (err.outputRows! < l.rows ? ` (${err.outputRows} rows)` : '') : '-',
            site.bits === 16 ? '16' : `${site.bits} (clip ${site.clip})`,
            site.transform ? `online ${site.transform.l}⊗${site.transform.r}` : (site.folded ?? '-'),
          ];
        }),
      ),
    ),
    '',
  );
  if (m.timings?.length) {
    lines.push('## Compile time', '');
    lines.push(table(['pass', 'seconds'], timeRows(m, info).map((t) => [t.pass, fmt(t.seconds, 1)])), '');
  }
  lines.push('## Files', '');
  lines.push(table(['file', 'bytes'], Object.entries(m.files).map(([f, n]) => [f, n.toLocaleString('en-US')])), '');
  if (info.notes?.length) lines.push('## Notes', '', ...info.notes.map((n) => `- ${n}`), '');
  return lines.join('\n');
}

/** Time per pass, then the perplexity evaluation (--eval) and the whole run. */
export function timeRows(m: ArtifactManifest, info: ReportInfo): { pass: string; seconds: number }[] {
  return [
    ...(m.timings ?? []),
    ...(m.eval?.seconds !== undefined ? [{ pass: 'perplexity (--eval: 3 models and the RTN compile)', seconds: m.eval.seconds }] : []),
    { pass: 'total (load and write included)', seconds: info.seconds },
  ];
}

export const pointLabel: Record<NonNullable<ArtifactManifest['eval']>['points'][number]['model'], string> = {
  source: 'source',
  'rtn-ternary': 'RTN ternary (per-row absmean)',
  compiled: 'this compile',
};
