// `twlac inspect`: what recognition found, as an aligned table for people or JSON for tools.
// Pure functions of a TransformerStructure; the CLI command loads the model and prints.
import { linearName, structureToJSON, type Linear, type Norm, type StructureJSON, type TransformerStructure } from '../graph/recognize.ts';

/** Left-aligned columns separated by two spaces; trailing spaces trimmed. */
function alignColumns(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
}

function normCell(n: Norm | undefined): string {
  if (!n) return '-';
  return `${n.kind} ε=${n.eps}${n.gamma ? '' : ' (no γ)'}${n.beta ? ' +β' : ''}`;
}

function linearRow(l: Linear, indent: string): string[] {
  const path = l.weightPath.map((n) => n.opType).join('→');
  return [
    `${indent}${l.role ?? '?'}`,
    `${l.outFeatures}×${l.inFeatures}`,
    l.weightDtype,
    l.layout === 'in_out' ? '[in,out]' : '[out,in]',
    l.op + (path ? `(${path})` : ''),
    l.bias ? 'bias' : '-',
    linearName(l),
  ];
}

/** A readable report (no trailing newline): per block its norms and linears (role, out×in, dtype, stored layout), then the config. */
export function formatInspectTable(s: TransformerStructure): string {
  const lines: string[] = [];
  const emb = s.embedding;
  lines.push(`embedding  ${emb.table.name}  ${s.config.vocab}×${s.config.hidden}${s.tiedEmbeddings ? '  (tied to lm_head)' : ''}`);
  const pos = s.positionEmbedding;
  if (pos) lines.push(`positions  ${pos.table.name}  ${s.config.maxPositions}×${s.config.hidden}  (learned, added to the embedding)`);
  const rows: string[][] = [['role', 'out×in', 'dtype', 'layout', 'op', 'bias', 'weight']];
  const header = rows.length;
  const sections: { at: number; title: string }[] = [];
  for (const b of s.blocks) {
    const mlpNorm = b.mlpNorm === b.attnNorm ? 'the attn norm (shared)' : normCell(b.mlpNorm);
    const layout = `${b.gate ? '' : ' (ungated)'}${b.parallel ? '  residual: parallel' : ''}`;
    sections.push({ at: rows.length, title: `block ${b.index}  attn norm: ${normCell(b.attnNorm)}  mlp norm: ${mlpNorm}  act: ${b.activation}${layout}` });
    for (const l of [b.q, b.k, b.v, b.o, ...(b.gate ? [b.gate] : []), b.up, b.down]) rows.push(linearRow(l, '  '));
  }
  sections.push({ at: rows.length, title: `head  final norm: ${normCell(s.finalNorm)}` });
  rows.push(linearRow(s.lmHead, '  '));
  const aligned = alignColumns(rows);
  lines.push('', ...aligned.slice(0, header));
  for (let i = header; i < aligned.length; i++) {
    const sec = sections.find((x) => x.at === i);
    if (sec) lines.push(sec.title);
    lines.push(aligned[i]);
  }
  const c = s.config;
  const src = s.configSources;
  const from = (k: keyof typeof src): string => (src[k] === 'graph' ? '' : ` (${src[k]})`);
  lines.push(
    '',
    'config',
    ...alignColumns([
      ['  layers', String(c.layers), 'hidden', String(c.hidden), 'vocab', String(c.vocab)],
      ['  heads', String(c.heads), 'kv heads', String(c.kvHeads), 'head dim', `${c.headDim}${from('headDim')}`],
      ['  intermediate', String(c.intermediate), 'rope θ', s.rope.rotaryDim === 0 ? 'none' : `${c.ropeTheta}${from('ropeTheta')}`, 'norm ε', `${c.normEps}${from('normEps')}`],
      ['  max positions', `${c.maxPositions}${from('maxPositions')}`, 'linears', String(s.linears.length), 'norms', String(s.norms.length)],
    ]),
  );
  if (s.notes.length) lines.push('', 'notes', ...s.notes.map((n) => `  ${n}`));
  return lines.join('\n');
}

/** `inspect --json`: the structure as a JSON-ready document (names, shapes, config); the caller stringifies. */
export function inspectJSON(s: TransformerStructure): StructureJSON {
  return structureToJSON(s);
}
