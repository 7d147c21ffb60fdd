// out/report.md: a short human summary of what was compiled, from the manifest alone.
import type { ArtifactManifest, LinearEntry } from './artifact/manifest.ts';
import { BLOCK_LINEARS } from './artifact/build.ts';

const fmt = (x: number, d = 3) => x.toFixed(d);

function table(head: string[], rows: (string | number)[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function renderReport(m: ArtifactManifest, info: { seconds: number; notes?: string[] }): string {
  const c = m.config;
  const lin: LinearEntry[] = m.blocks.flatMap((b) => BLOCK_LINEARS.map((r) => b[r]));
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
  lines.push('## Linears', '');
  lines.push(
    table(
      ['linear', 'shape', 'format', 'bits/w (weights.bin)', 'bits/w (onnx)', 'act bits', 'transform'],
      m.blocks.flatMap((b, i) =>
        BLOCK_LINEARS.map((r) => {
          const l = b[r];
          const site = r === 'q' || r === 'k' || r === 'v' ? b.acts.attn : r === 'gate' || r === 'up' ? b.acts.mlp : r === 'o' ? b.acts.o : b.acts.down;
          const on = m.onnx?.linears[`blocks.${i}.${r}`];
          return [
            `blocks.${i}.${r}`,
            `${l.rows}×${l.cols}`,
            l.format,
            fmt(l.bitsPerWeight),
            on ? fmt(on.bitsPerWeight) : '-',
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
    lines.push(table(['pass', 'seconds'], [...m.timings.map((t) => [t.pass, fmt(t.seconds, 1)]), ['total (with load and write)', fmt(info.seconds, 1)]]), '');
  }
  lines.push('## Files', '');
  lines.push(table(['file', 'bytes'], Object.entries(m.files).map(([f, n]) => [f, n.toLocaleString('en-US')])), '');
  if (info.notes?.length) lines.push('## Notes', '', ...info.notes.map((n) => `- ${n}`), '');
  return lines.join('\n');
}
