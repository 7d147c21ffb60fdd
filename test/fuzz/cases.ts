// Fuzz and fault cases, generated from a seed. Each case damages a copy of the corpus (or
// the command line) in one way and says what twlac must do: refuse it, or either refuse it
// or compile it into a model onnxruntime loads and runs (the harness checks both).
//
// Categories (the counts the suite reports):
//   protobuf  random byte flips, truncations and insertions in model.onnx
//   semantic  valid protobufs that lie: dims/dtype against data, missing initializers,
//             dangling inputs, cycles, unknown domains, duplicate names, absurd dims,
//             NaN/Inf and out-of-range values, empty graphs, opsets, bad norms and attributes
//   external  external data outside the folder (relative, absolute, symlink), offsets and
//             lengths past the end, missing, short or odd files
//   text      bad tokenizers, config.json and calibration text
//   cli       bad command lines: -o onto files, inputs, the working folder, unwritable places;
//             unknown or conflicting flags; folders and special files as inputs; signals
//   size      hostile sizes: tensors declaring 100 GB, huge files, unbounded counts
import { mkdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ModelProto, decodeKeepingUnknowns, encode, ATTR, type ModelMsg, type NodeMsg, type TensorMsg } from '../../src/graph/proto/schema.ts';
import { mulberry32 } from '../../src/util/prng.ts';
import { copyDir, STYLES, type Corpus, type Style } from './corpus.ts';

export const CATEGORIES = ['protobuf', 'semantic', 'external', 'text', 'cli', 'size'] as const;
export type Category = (typeof CATEGORIES)[number];

export interface CaseSetup {
  /** Arguments after `twlac`; `-o <dir>/out -q` is appended unless `-o` is among them or `bare` is set. */
  args: string[];
  /** The output folder the run may write (default `<dir>/out`). */
  out?: string;
  /** Working folder (CLI cases only). */
  cwd?: string;
  /** Send this signal once the compile's temporary folder appears (CLI cases only). */
  signal?: 'SIGINT' | 'SIGTERM' | 'SIGKILL';
  /** Do not append `-o ... -q`. */
  bare?: boolean;
  /** Exit codes that count as the expected refusal (default: any documented non-zero code). */
  exits?: number[];
}

export interface FuzzCase {
  id: string;
  category: Category;
  /** 'refuse': must end non-zero; 'accept': must compile; 'either': a clean refusal or a working output. */
  expect: 'refuse' | 'accept' | 'either';
  /** Needs the real binary: special files, a working folder, signals, memory measured. */
  cli?: boolean;
  /** A refusal's line must match this (it names the problem). */
  mentions?: RegExp;
  setup(dir: string): CaseSetup;
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Rand, n: number) => Math.floor(r() * n);

const RTN = ['--weights', 'rtn-ternary'];
const styles = Object.keys(STYLES) as Style[];

// ------------------------------------------------------------------ protobuf-level damage

function protobufCase(c: Corpus, n: number, r: Rand): FuzzCase {
  const how = (['flip', 'truncate', 'insert'] as const)[n % 3];
  const style = pick(r, styles);
  const inline = r() < 0.5;
  const seed = int(r, 2 ** 31);
  return {
    id: `protobuf/${how}/${inline ? 'inline' : 'ext'}#${n}`,
    category: 'protobuf',
    expect: 'either',
    setup(dir) {
      const src = inline ? c.inlineDir(style) : c.extDir(style);
      copyDir(src, join(dir, 'm'));
      const path = join(dir, 'm', 'model.onnx');
      const bytes = new Uint8Array(readFileSync(path));
      const rr = mulberry32(seed);
      let out: Uint8Array;
      if (how === 'flip') {
        out = bytes;
        for (let k = 1 + int(rr, 8); k > 0; k--) out[int(rr, out.length)] ^= 1 << int(rr, 8);
      } else if (how === 'truncate') {
        out = bytes.subarray(0, int(rr, bytes.length));
      } else {
        const at = int(rr, bytes.length);
        const ins = Uint8Array.from({ length: 1 + int(rr, 16) }, () => int(rr, 256));
        out = new Uint8Array([...bytes.subarray(0, at), ...ins, ...bytes.subarray(at)]);
      }
      writeFileSync(path, out);
      return { args: [path, ...RTN] };
    },
  };
}

// ------------------------------------------------------------------ semantic damage

interface Loaded {
  msg: ModelMsg;
  dir: string;
  path: string;
  save(): void;
}

function loadCopy(c: Corpus, dir: string, style: Style, inline = false): Loaded {
  copyDir(inline ? c.inlineDir(style) : c.extDir(style), join(dir, 'm'));
  const path = join(dir, 'm', 'model.onnx');
  const msg = decodeKeepingUnknowns<ModelMsg>(ModelProto, readFileSync(path));
  return { msg, dir: join(dir, 'm'), path, save: () => writeFileSync(path, encode(ModelProto, msg)) };
}

const inits = (m: ModelMsg): TensorMsg[] => m.graph!.initializer!;
const nodes = (m: ModelMsg): NodeMsg[] => m.graph!.node!;
const byName = (m: ModelMsg, name: string) => inits(m).find((t) => t.name === name)!;
const isWeight = (t: TensorMsg) => /_proj\.weight$|embed_tokens|lm_head|^w\d|weight/.test(t.name ?? '') && (t.dims?.length ?? 0) === 2;
const isNormWeight = (t: TensorMsg) => /layernorm\.weight$|norm\.weight$/.test(t.name ?? '');
const floatInits = (m: ModelMsg) => inits(m).filter((t) => t.data_type === 1);
/** Initializers stored in external data (protobufjs gives every tensor an empty external_data list). */
const externals = (m: ModelMsg) => inits(m).filter((t) => t.data_location === 1);

/** Set element `i` of a float32 initializer (inline raw_data or external data file). */
function setFloat(l: Loaded, t: TensorMsg, i: number, x: number): void {
  const b = Buffer.alloc(4);
  b.writeFloatLE(x);
  // protobufjs gives absent fields their defaults (an empty raw_data): the location decides.
  if (t.data_location !== 1 && t.raw_data?.length) {
    t.raw_data = new Uint8Array(t.raw_data);
    t.raw_data.set(b, i * 4);
    return;
  }
  if (t.data_location !== 1 && t.float_data?.length) {
    t.float_data[i] = x;
    return;
  }
  const kv = new Map((t.external_data ?? []).map((e) => [e.key, e.value]));
  const file = join(l.dir, kv.get('location')!);
  const data = readFileSync(file);
  b.copy(data, Number(kv.get('offset') ?? 0) + i * 4);
  writeFileSync(file, data);
}

const numelOf = (t: TensorMsg) => (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1);

type Mutation = { name: string; expect: FuzzCase['expect']; run(l: Loaded, r: Rand): void };

const SEMANTIC: Mutation[] = [
  {
    name: 'dims-vs-data',
    expect: 'refuse',
    run(l, r) {
      const t = pick(r, inits(l.msg));
      const dims = [...(t.dims ?? [])].map(Number);
      if (dims.length && r() < 0.5) dims[int(r, dims.length)] *= 2;
      else dims.push(2 + int(r, 3));
      t.dims = dims;
    },
  },
  {
    name: 'dtype-vs-data',
    expect: 'either',
    run(l, r) {
      const t = pick(r, inits(l.msg));
      t.data_type = pick(r, [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 16, 21, 999].filter((d) => d !== t.data_type));
    },
  },
  {
    name: 'missing-initializer',
    expect: 'refuse',
    run(l, r) {
      inits(l.msg).splice(int(r, inits(l.msg).length), 1);
    },
  },
  {
    name: 'dangling-input',
    expect: 'refuse',
    run(l, r) {
      const n = pick(r, nodes(l.msg).filter((x) => (x.input?.length ?? 0) > 0));
      n.input![int(r, n.input!.length)] = `nowhere_${int(r, 1000)}`;
    },
  },
  {
    name: 'cycle',
    expect: 'refuse',
    run(l, r) {
      // n reads p's output; make p read n's output too.
      const producers = new Map<string, NodeMsg>();
      for (const x of nodes(l.msg)) for (const o of x.output ?? []) producers.set(o, x);
      const cands = nodes(l.msg).filter((x) => (x.input ?? []).some((i) => producers.has(i)));
      const n = pick(r, cands);
      const p = producers.get(pick(r, (n.input ?? []).filter((i) => producers.has(i))))!;
      p.input![int(r, p.input!.length)] = n.output![0];
    },
  },
  {
    name: 'unknown-domain',
    expect: 'refuse',
    run(l, r) {
      pick(r, nodes(l.msg)).domain = 'com.example.fuzz';
      if (r() < 0.5) l.msg.opset_import!.push({ domain: 'com.example.fuzz', version: 1 });
    },
  },
  {
    name: 'duplicate-name',
    expect: 'refuse',
    run(l, r) {
      const how = int(r, 3);
      if (how === 0) inits(l.msg).push({ ...pick(r, inits(l.msg)) });
      else if (how === 1) {
        const [a, b] = [pick(r, nodes(l.msg)), pick(r, nodes(l.msg))];
        if (a === b) inits(l.msg).push({ ...inits(l.msg)[0] });
        else b.output![0] = a.output![0];
      } else pick(r, nodes(l.msg)).output![0] = pick(r, inits(l.msg)).name!;
    },
  },
  {
    name: 'absurd-dims',
    expect: 'refuse',
    run(l, r) {
      const t = pick(r, inits(l.msg));
      t.dims = pick(r, [[2 ** 20, 2 ** 20], [-1, 64], [2 ** 40], [2 ** 31, 2 ** 31, 4], [-(2 ** 40)]]);
    },
  },
  {
    name: 'non-finite-weight',
    expect: 'refuse',
    run(l, r) {
      const t = pick(r, floatInits(l.msg).filter((x) => isWeight(x) || isNormWeight(x)));
      setFloat(l, t, int(r, numelOf(t)), pick(r, [NaN, Infinity, -Infinity]));
    },
  },
  {
    name: 'beyond-fp16-weight',
    expect: 'refuse',
    run(l, r) {
      const t = pick(r, floatInits(l.msg).filter((x) => isWeight(x) || isNormWeight(x)));
      setFloat(l, t, int(r, numelOf(t)), pick(r, [1, -1]) * pick(r, [70000, 1e6, 3e38]));
    },
  },
  {
    name: 'non-finite-constant',
    expect: 'either',
    run(l, r) {
      const t = pick(r, floatInits(l.msg).filter((x) => !isWeight(x)));
      setFloat(l, t, int(r, Math.max(1, numelOf(t))), pick(r, [NaN, Infinity, -Infinity, 1e30, -1e30, 0]));
    },
  },
  {
    name: 'norm-eps',
    expect: 'refuse',
    run(l, r) {
      const bad = pick(r, [NaN, -1, 5, Infinity]);
      const eps = inits(l.msg).filter((t) => /^eps/.test(t.name ?? ''));
      if (eps.length) setFloat(l, pick(r, eps), 0, bad);
      for (const n of nodes(l.msg)) for (const a of n.attribute ?? []) if (a.name === 'epsilon') a.f = bad;
    },
  },
  {
    name: 'rope-freq',
    expect: 'refuse',
    run(l, r) {
      const t = inits(l.msg).find((x) => x.name === 'inv_freq');
      if (t) setFloat(l, t, int(r, numelOf(t)), pick(r, [NaN, Infinity, -Infinity]));
      else pick(r, nodes(l.msg)).op_type = 'NoSuchOp';
    },
  },
  {
    name: 'empty-graph',
    expect: 'refuse',
    run(l, r) {
      const g = l.msg.graph!;
      g.node = [];
      if (r() < 0.5) g.initializer = [];
      if (r() < 0.3) g.output = [];
    },
  },
  {
    name: 'opset',
    expect: 'refuse',
    run(l, r) {
      const v = pick(r, [0, 1, 5, 27, 9999, -3]);
      if (r() < 0.2) l.msg.opset_import = [];
      else if (r() < 0.2) l.msg.opset_import!.push({ domain: 'com.microsoft', version: pick(r, [0, 2, 99]) });
      else l.msg.opset_import![0].version = v;
    },
  },
  {
    name: 'norm-dtype',
    expect: 'refuse',
    run(l, r) {
      const t = pick(r, inits(l.msg).filter(isNormWeight));
      const n = numelOf(t);
      const to = pick(r, [9, 2, 3, 7, 6]);
      const width = { 9: 1, 2: 1, 3: 1, 7: 8, 6: 4 }[to]!;
      t.data_type = to;
      t.raw_data = new Uint8Array(n * width).fill(1);
      delete t.float_data;
    },
  },
  {
    name: 'norm-width',
    expect: 'refuse',
    run(l, r) {
      const t = pick(r, inits(l.msg).filter(isNormWeight));
      // (A width of 1 broadcasts: a valid scalar γ, not damage.)
      const n = pick(r, [2, 32, 63, 65, 128]);
      t.dims = [n];
      t.raw_data = new Uint8Array(new Float32Array(n).fill(1).buffer);
      delete t.float_data;
    },
  },
  {
    name: 'int-weight',
    expect: 'refuse',
    run(l, r) {
      const t = pick(r, inits(l.msg).filter((x) => isWeight(x) && x.data_type === 1));
      t.data_type = pick(r, [6, 12]); // INT32 or UINT32: same width as float32
    },
  },
  {
    name: 'attribute-type',
    expect: 'either',
    run(l, r) {
      const withAttrs = nodes(l.msg).filter((n) => (n.attribute?.length ?? 0) > 0);
      const a = pick(r, pick(r, withAttrs).attribute!);
      const to = pick(r, [ATTR.FLOAT, ATTR.INT, ATTR.STRING, ATTR.INTS, ATTR.FLOATS]);
      for (const k of ['f', 'i', 's', 't', 'g', 'floats', 'ints', 'strings'] as const) delete a[k];
      a.type = to;
      if (to === ATTR.FLOAT) a.f = 1;
      else if (to === ATTR.INT) a.i = 1;
      else if (to === ATTR.STRING) a.s = new TextEncoder().encode('x');
      else if (to === ATTR.INTS) a.ints = [1, 2];
      else a.floats = [1.5];
    },
  },
  {
    name: 'float-axis',
    expect: 'either',
    run(l, r) {
      const cands = nodes(l.msg).filter((n) => n.attribute?.some((a) => a.name === 'axis'));
      const a = pick(r, cands).attribute!.find((x) => x.name === 'axis')!;
      delete a.i;
      a.type = ATTR.FLOAT;
      a.f = pick(r, [0, 1, -1, 0.5]);
    },
  },
  {
    name: 'unknown-op',
    expect: 'either',
    run(l, r) {
      pick(r, nodes(l.msg)).op_type = pick(r, ['NoSuchOp', '', 'Relu', 'Identity']);
    },
  },
  {
    name: 'hostile-names',
    expect: 'either',
    run(l, r) {
      // Control bytes, escape sequences and newlines in names; the error line must escape them.
      const evil = pick(r, ['\u001b[2J\u001b[31mred', 'a\nb\rc', 'nul\u0000x', 'bidi\u202etxt', '\u0007bell']);
      if (r() < 0.5) {
        // Renamed consistently: the model stays valid.
        const t = pick(r, inits(l.msg));
        const old = t.name!;
        t.name = `${old}${evil}`;
        for (const n of nodes(l.msg)) n.input = n.input?.map((i) => (i === old ? t.name! : i));
      } else {
        // A reference to a hostile name nobody defines: the refusal prints it.
        const n = pick(r, nodes(l.msg).filter((x) => (x.input?.length ?? 0) > 0));
        n.input![0] = `x${evil}`;
      }
    },
  },
];

/** Kinds are taken in turn (every kind runs in the quick form); their parameters are random. */
const nth = <T>(xs: readonly T[], n: number): T => xs[n % xs.length];

function semanticCase(c: Corpus, n: number, r: Rand): FuzzCase {
  const mut = nth(SEMANTIC, n);
  const style = pick(r, styles);
  const seed = int(r, 2 ** 31);
  const inspect = r() < 0.15;
  return {
    id: `semantic/${mut.name}/${style}${inspect ? '/inspect' : ''}#${n}`,
    category: 'semantic',
    expect: inspect && mut.expect === 'refuse' && !/dims|missing|dangling|cycle|duplicate|empty/.test(mut.name) ? 'either' : mut.expect,
    setup(dir) {
      const l = loadCopy(c, dir, style);
      mut.run(l, mulberry32(seed));
      l.save();
      return inspect ? { args: ['inspect', l.path], bare: true } : { args: [l.path, ...RTN] };
    },
  };
}

// ------------------------------------------------------------------ external data

function setLocation(t: TensorMsg, key: string, value: string): void {
  const e = t.external_data!.find((x) => x.key === key);
  if (e) e.value = value;
  else t.external_data!.push({ key, value });
}

const EXTERNAL: { name: string; mentions: RegExp; run(l: Loaded, dir: string, r: Rand): void }[] = [
  {
    name: 'relative-outside',
    mentions: /leaves the model's folder/,
    run(l, dir) {
      writeFileSync(join(dir, 'outside.data'), readFileSync(join(l.dir, 'model.onnx.data')));
      for (const t of externals(l.msg)) setLocation(t, 'location', '../outside.data');
    },
  },
  {
    name: 'absolute',
    mentions: /is absolute/,
    run(l, dir) {
      writeFileSync(join(dir, 'outside.data'), readFileSync(join(l.dir, 'model.onnx.data')));
      for (const t of externals(l.msg)) setLocation(t, 'location', join(dir, 'outside.data'));
    },
  },
  {
    name: 'dotdot-inside',
    mentions: /leaves the model's folder/,
    run(l) {
      mkdirSync(join(l.dir, 'sub'));
      for (const t of externals(l.msg)) setLocation(t, 'location', 'sub/../model.onnx.data');
    },
  },
  {
    name: 'symlink-outside',
    mentions: /resolves outside the model's folder/,
    run(l, dir) {
      writeFileSync(join(dir, 'outside.data'), readFileSync(join(l.dir, 'model.onnx.data')));
      symlinkSync(join(dir, 'outside.data'), join(l.dir, 'link.data'));
      for (const t of externals(l.msg)) setLocation(t, 'location', 'link.data');
    },
  },
  {
    name: 'symlink-system',
    mentions: /resolves outside the model's folder/,
    run(l, _dir, r) {
      symlinkSync(pick(r, ['/etc/passwd', '/etc/hostname', '/dev/zero', '/proc/self/environ']), join(l.dir, 'sys.data'));
      for (const t of externals(l.msg)) setLocation(t, 'location', 'sys.data');
    },
  },
  {
    name: 'offset-past-end',
    mentions: /too short/,
    run(l, _dir, r) {
      const t = pick(r, externals(l.msg));
      setLocation(t, 'offset', String(pick(r, [425984, 10 ** 12, 2 ** 53 - 1])));
    },
  },
  {
    name: 'length-past-end',
    mentions: /too short|does not match its shape/,
    run(l, _dir, r) {
      const t = pick(r, externals(l.msg));
      setLocation(t, 'length', String(pick(r, [10 ** 9, 2 ** 40, 425985])));
    },
  },
  {
    name: 'bad-number',
    mentions: /is not a byte count|names no location|too short/,
    run(l, _dir, r) {
      const t = pick(r, externals(l.msg));
      setLocation(t, pick(r, ['offset', 'length']), pick(r, ['-64', 'abc', '1e3', '', '0x40', '99999999999999999999']));
    },
  },
  {
    name: 'missing-file',
    mentions: /missing|names no location/,
    run(l, _dir, r) {
      const t = pick(r, externals(l.msg));
      setLocation(t, 'location', pick(r, ['nope.data', '', 'model.onnx.data.missing']));
    },
  },
  {
    name: 'short-file',
    mentions: /too short/,
    run(l, _dir, r) {
      truncateSync(join(l.dir, 'model.onnx.data'), int(r, 425984));
    },
  },
  {
    name: 'folder',
    mentions: /it is a folder/,
    run(l) {
      mkdirSync(join(l.dir, 'adir'));
      for (const t of externals(l.msg)) setLocation(t, 'location', 'adir');
    },
  },
];

function externalCase(c: Corpus, n: number, r: Rand): FuzzCase {
  const mut = nth(EXTERNAL, n);
  const style = pick(r, styles);
  const seed = int(r, 2 ** 31);
  const inspect = r() < 0.3;
  return {
    id: `external/${mut.name}${inspect ? '/inspect' : ''}#${n}`,
    category: 'external',
    expect: 'refuse',
    mentions: mut.mentions,
    setup(dir) {
      const l = loadCopy(c, dir, style);
      mut.run(l, dir, mulberry32(seed));
      l.save();
      return inspect ? { args: ['inspect', l.path], bare: true } : { args: [l.path, ...RTN] };
    },
  };
}

// ------------------------------------------------------------------ tokenizers, config.json, calibration text

const BAD_TOKENIZERS: [string, (c: Corpus) => string][] = [
  ['empty', () => ''],
  ['not-json', () => '{"model": {"type": "BPE", '],
  ['array', () => '[1, 2, 3]'],
  ['no-model', () => '{"version": "1.0"}'],
  ['model-not-object', () => '{"model": 5}'],
  ['no-vocab', () => '{"model": {"type": "BPE", "merges": []}}'],
  ['empty-vocab', () => '{"model": {"type": "WordLevel", "vocab": {}, "unk_token": "a"}}'],
  ['string-id', () => '{"model": {"type": "WordLevel", "vocab": {"a": "0"}, "unk_token": "a"}}'],
  ['negative-id', () => '{"model": {"type": "WordLevel", "vocab": {"a": -1}, "unk_token": "a"}}'],
  ['huge-id', () => '{"model": {"type": "WordLevel", "vocab": {"a": 1099511627776}, "unk_token": "a"}}'],
  ['unigram-bad', () => '{"model": {"type": "Unigram", "vocab": [5, 6]}}'],
  ['added-not-array', (c) => c.tokenizerJson.replace('"added_tokens":[]', '"added_tokens":{"x":1}')],
  ['added-bad-id', (c) => c.tokenizerJson.replace('"added_tokens":[]', '"added_tokens":[{"id":"x","content":"y"}]')],
  ['vocab-larger-than-model', (c) => c.tokenizerJson.replace('"added_tokens":[]', '"added_tokens":[{"id":300,"content":"<extra>","special":true}]')],
  ['unknown-type', () => '{"model": {"type": "NoSuchModel", "vocab": {"a": 0}}}'],
  ['binary', () => '\u0000\u0001\u0002\u00ff'],
];

const BAD_CONFIGS: [string, unknown][] = [
  ['not-json', '{"vocab_size": '],
  ['array', [1, 2]],
  ['max-positions-negative', { max_position_embeddings: -1 }],
  ['max-positions-huge', { max_position_embeddings: 1e308 }],
  ['max-positions-string', { max_position_embeddings: 'abc' }],
  ['max-positions-fraction', { max_position_embeddings: 1.5 }],
  ['rope-theta-zero', { rope_theta: 0 }],
  ['rope-theta-negative', { rope_parameters: { rope_theta: -10000 } }],
  ['heads-zero', { num_attention_heads: 0 }],
  ['head-dim-huge', { head_dim: 1e9 }],
  ['eps-large', { rms_norm_eps: 5 }],
];

const CALIB_DAMAGE = ['empty', 'shorter-than-window', 'folder', 'missing', 'newlines'] as const;
type TextKind = { tokenizer: (typeof BAD_TOKENIZERS)[number]; beside: boolean } | { config: (typeof BAD_CONFIGS)[number] } | { calib: (typeof CALIB_DAMAGE)[number] };
const TEXT_KINDS: TextKind[] = [
  ...BAD_TOKENIZERS.flatMap((t) => [{ tokenizer: t, beside: true }, { tokenizer: t, beside: false }]),
  ...BAD_CONFIGS.map((config) => ({ config })),
  ...CALIB_DAMAGE.map((calib) => ({ calib })),
];

function textCase(c: Corpus, n: number, r: Rand): FuzzCase {
  const kind = nth(TEXT_KINDS, n);
  const style = pick(r, styles);
  const calibArgs = (calib = c.calibPath) => ['--weights', 'rtn-ternary', '--acts', '8', '--calib', calib, '--calib-samples', '2', '--seq', '32'];
  if ('tokenizer' in kind) {
    const [[name, make], beside] = [kind.tokenizer, kind.beside];
    return {
      id: `text/tokenizer/${name}/${beside ? 'beside' : 'flag'}#${n}`,
      category: 'text',
      expect: 'refuse',
      mentions: /tokenizer/,
      setup(dir) {
        copyDir(c.extDir(style), join(dir, 'm'));
        const tok = beside ? join(dir, 'm', 'tokenizer.json') : join(dir, 'tok.json');
        writeFileSync(tok, make(c));
        return { args: [join(dir, 'm', 'model.onnx'), ...calibArgs(), ...(beside ? [] : ['--tokenizer', tok])] };
      },
    };
  }
  if ('config' in kind) {
    const [name, cfg] = kind.config;
    return {
      id: `text/config/${name}#${n}`,
      category: 'text',
      expect: 'refuse',
      mentions: /config\.json/,
      setup(dir) {
        copyDir(c.extDir(style), join(dir, 'm'));
        const text = typeof cfg === 'string' ? cfg : Array.isArray(cfg) ? JSON.stringify(cfg) : JSON.stringify({ ...c.configJson, ...(cfg as object) });
        writeFileSync(join(dir, 'm', 'config.json'), text);
        return { args: [join(dir, 'm', 'model.onnx'), ...RTN] };
      },
    };
  }
  const what = kind.calib;
  return {
    id: `text/calib/${what}#${n}`,
    category: 'text',
    expect: 'refuse',
    mentions: /calibration text/,
    setup(dir) {
      copyDir(c.extDir(style), join(dir, 'm'));
      const calib = join(dir, 'calib.txt');
      if (what === 'empty') writeFileSync(calib, '');
      else if (what === 'shorter-than-window') writeFileSync(calib, 'the model');
      else if (what === 'folder') mkdirSync(calib);
      else if (what === 'newlines') writeFileSync(calib, '\n'.repeat(20));
      return { args: [join(dir, 'm', 'model.onnx'), ...calibArgs(calib)] };
    },
  };
}

// ------------------------------------------------------------------ command lines

type CliKind = { name: string; expect: FuzzCase['expect']; cli?: boolean; mentions?: RegExp; setup(c: Corpus, dir: string): CaseSetup };

const model = (c: Corpus, dir: string) => {
  copyDir(c.extDir('torch'), join(dir, 'm'));
  return join(dir, 'm', 'model.onnx');
};

/** A completed earlier output at dir/out (compiled by the real binary in the case's setup). */
function earlierOutput(c: Corpus, dir: string): string {
  const m = model(c, dir);
  execFileSync(process.execPath, [BIN, m, ...RTN, '-o', join(dir, 'out'), '-q'], { stdio: 'ignore' });
  return m;
}

export const BIN = new URL('../../bin/twlac.js', import.meta.url).pathname;

/** A named pipe (Node has no mkfifo of its own). */
const fifo = (path: string) => execFileSync('mkfifo', [path]);

const CLI_KINDS: CliKind[] = [
  { name: 'out-onto-file', expect: 'refuse', mentions: /not a folder/, setup: (c, d) => (writeFileSync(join(d, 'out'), 'keep'), { args: [model(c, d), ...RTN] }) },
  { name: 'out-onto-input-folder', expect: 'refuse', mentions: /contains, the input/, setup: (c, d) => ({ args: [model(c, d), ...RTN, '-o', join(d, 'm'), '-q'], out: join(d, 'm') }) },
  { name: 'out-onto-input-file', expect: 'refuse', mentions: /contains, the input|not a folder/, setup: (c, d) => ({ args: [model(c, d), ...RTN, '-o', join(d, 'm', 'model.onnx'), '-q'], out: join(d, 'm', 'model.onnx') }) },
  { name: 'out-contains-input', expect: 'refuse', mentions: /contains, the input/, setup: (c, d) => ({ args: [model(c, d), ...RTN, '-o', d, '-q'], out: d }) },
  { name: 'out-under-proc', expect: 'refuse', mentions: /cannot write output/, setup: (c, d) => ({ args: [model(c, d), ...RTN, '-o', '/proc/twlac-fuzz-out', '-q'], out: '/proc/twlac-fuzz-out' }) },
  { name: 'out-under-sys', expect: 'refuse', mentions: /cannot write output/, setup: (c, d) => ({ args: [model(c, d), ...RTN, '-o', '/sys/twlac-fuzz-out', '-q'], out: '/sys/twlac-fuzz-out' }) },
  { name: 'out-below-file', expect: 'refuse', mentions: /not a folder/, setup: (c, d) => ({ args: [model(c, d), ...RTN, '-o', join(d, 'm', 'model.onnx', 'x'), '-q'], out: join(d, 'm', 'model.onnx', 'x') }) },
  { name: 'out-no-parent', expect: 'refuse', mentions: /does not exist/, setup: (c, d) => ({ args: [model(c, d), ...RTN, '-o', join(d, 'a', 'b', 'c'), '-q'], out: join(d, 'a', 'b', 'c') }) },
  {
    name: 'out-foreign-folder',
    expect: 'refuse',
    mentions: /files twlac did not write/,
    setup: (c, d) => (mkdirSync(join(d, 'out')), writeFileSync(join(d, 'out', 'thesis.tex'), 'years of work'), { args: [model(c, d), ...RTN, '--force'] }),
  },
  { name: 'out-earlier-no-force', expect: 'refuse', mentions: /--force/, setup: (c, d) => ({ args: [earlierOutput(c, d), ...RTN] }) },
  { name: 'out-earlier-force', expect: 'accept', setup: (c, d) => ({ args: [earlierOutput(c, d), ...RTN, '--force'] }) },
  {
    name: 'out-earlier-plus-foreign-force',
    expect: 'refuse',
    mentions: /notes\.txt, which twlac did not write/,
    setup: (c, d) => {
      const m = earlierOutput(c, d);
      writeFileSync(join(d, 'out', 'notes.txt'), 'mine');
      return { args: [m, ...RTN, '--force'] };
    },
  },
  { name: 'out-symlink', expect: 'refuse', mentions: /symbolic link/, setup: (c, d) => (mkdirSync(join(d, 'real')), symlinkSync(join(d, 'real'), join(d, 'out')), { args: [model(c, d), ...RTN] }) },
  { name: 'unknown-flag', expect: 'refuse', mentions: /frobnicate/, setup: (c, d) => ({ args: [model(c, d), ...RTN, '--frobnicate'], exits: [1] }) },
  { name: 'order2-with-rtn', expect: 'refuse', setup: (c, d) => ({ args: [model(c, d), ...RTN, '--order2-cols', '4'] }) },
  { name: 'twla-without-calib', expect: 'refuse', setup: (c, d) => ({ args: [model(c, d), '--weights', 'twla'] }) },
  { name: 'calib-samples-huge', expect: 'refuse', mentions: /--calib-samples must be an integer from 1 to 4096/, setup: (c, d) => ({ args: [model(c, d), '--calib', c.calibPath, '--calib-samples', '100000000'], exits: [1] }) },
  { name: 'seq-tiny', expect: 'refuse', setup: (c, d) => ({ args: [model(c, d), '--calib', c.calibPath, '--seq', '4'], exits: [1] }) },
  { name: 'seed-negative', expect: 'refuse', setup: (c, d) => ({ args: [model(c, d), '--calib', c.calibPath, '--seed', '-1'], exits: [1] }) },
  { name: 'seed-text', expect: 'refuse', setup: (c, d) => ({ args: [model(c, d), '--calib', c.calibPath, '--seed', '1e3'], exits: [1] }) },
  { name: 'acts-3', expect: 'refuse', setup: (c, d) => ({ args: [model(c, d), ...RTN, '--acts', '3'] }) },
  { name: 'format-bogus', expect: 'refuse', setup: (c, d) => ({ args: [model(c, d), '--format', 'tq9_g7'] }) },
  { name: 'target-bogus', expect: 'refuse', setup: (c, d) => ({ args: [model(c, d), ...RTN, '--target', 'metal'] }) },
  { name: 'model-folder-without-model', expect: 'refuse', mentions: /it is a folder/, setup: (_c, d) => (mkdirSync(join(d, 'empty')), { args: [join(d, 'empty'), ...RTN] }) },
  { name: 'model-missing', expect: 'refuse', setup: (_c, d) => ({ args: [join(d, 'nope.onnx'), ...RTN] }) },
  { name: 'tokenizer-folder', expect: 'refuse', mentions: /it is a folder/, setup: (c, d) => (mkdirSync(join(d, 'tokdir')), { args: [model(c, d), ...RTN, '--tokenizer', join(d, 'tokdir')] }) },
  {
    name: 'tokenizer-symlink-outside',
    expect: 'refuse',
    mentions: /resolves outside its folder/,
    setup: (c, d) => {
      const m = model(c, d);
      rmSync(join(d, 'm', 'tokenizer.json'));
      symlinkSync('/etc/passwd', join(d, 'm', 'tokenizer.json'));
      return { args: [m, ...RTN] };
    },
  },
  {
    name: 'config-symlink-outside',
    expect: 'refuse',
    mentions: /resolves outside the model's folder/,
    setup: (c, d) => {
      const m = model(c, d);
      rmSync(join(d, 'm', 'config.json'));
      symlinkSync('/etc/hostname', join(d, 'm', 'config.json'));
      return { args: [m, ...RTN] };
    },
  },
  {
    name: 'config-folder',
    expect: 'refuse',
    mentions: /it is a folder/,
    setup: (c, d) => {
      const m = model(c, d);
      rmSync(join(d, 'm', 'config.json'));
      mkdirSync(join(d, 'm', 'config.json'));
      return { args: [m, ...RTN] };
    },
  },
  {
    name: 'run-token-past-vocab',
    expect: 'refuse',
    mentions: /token id 300 is outside/,
    setup: (c, d) => {
      const tok = join(d, 'tok.json');
      writeFileSync(tok, c.tokenizerJson.replace('"added_tokens":[]', '"added_tokens":[{"id":300,"content":"<extra>","special":true}]'));
      return { args: ['run', model(c, d), '--prompt', 'the <extra>', '--max-tokens', '2', '--tokenizer', tok], bare: true };
    },
  },
  {
    name: 'eval-token-past-vocab',
    expect: 'refuse',
    mentions: /token id 300 is outside/,
    setup: (c, d) => {
      const tok = join(d, 'tok.json');
      writeFileSync(tok, c.tokenizerJson.replace('"added_tokens":[]', '"added_tokens":[{"id":300,"content":"<extra>","special":true}]'));
      writeFileSync(join(d, 'text.txt'), `<extra> ${readFileSync(c.calibPath, 'utf8').slice(0, 3000)}`);
      return { args: ['eval', model(c, d), '--text', join(d, 'text.txt'), '--tokenizer', tok, '--max-windows', '1', '-q'], bare: true };
    },
  },
  {
    name: 'run-external-outside',
    expect: 'refuse',
    mentions: /resolves outside the model's folder/,
    setup: (c, d) => {
      const m = model(c, d);
      writeFileSync(join(d, 'outside.data'), readFileSync(join(d, 'm', 'model.onnx.data')));
      rmSync(join(d, 'm', 'model.onnx.data'));
      symlinkSync(join(d, 'outside.data'), join(d, 'm', 'model.onnx.data'));
      return { args: ['run', m, '--prompt', 'the', '--max-tokens', '2'], bare: true };
    },
  },
  { name: 'control-ok', expect: 'accept', setup: (c, d) => ({ args: [model(c, d), ...RTN] }) },
  // Through the real binary only: the working folder, special files, signals.
  { name: 'out-dot', expect: 'refuse', mentions: /current folder/, cli: true, setup: (c, d) => ({ args: [model(c, d), ...RTN, '-o', '.', '-q'], cwd: d, out: join(d, 'never') }) },
  { name: 'out-empty', expect: 'refuse', mentions: /empty/, cli: true, setup: (c, d) => ({ args: [model(c, d), ...RTN, '-o', '', '-q'], cwd: d, out: join(d, 'never') }) },
  { name: 'out-parent-of-cwd', expect: 'refuse', mentions: /current folder/, cli: true, setup: (c, d) => (mkdirSync(join(d, 'w')), { args: [model(c, d), ...RTN, '-o', '..', '-q'], cwd: join(d, 'w'), out: join(d, 'never') }) },
  { name: 'model-fifo', expect: 'refuse', mentions: /it is a FIFO/, cli: true, setup: (_c, d) => (fifo(join(d, 'model.onnx')), { args: [join(d, 'model.onnx'), ...RTN] }) },
  { name: 'eval-model-fifo', expect: 'refuse', mentions: /it is a FIFO/, cli: true, setup: (c, d) => (fifo(join(d, 'model.onnx')), { args: ['eval', join(d, 'model.onnx'), '--text', c.calibPath, '--tokenizer', join(c.extDir('torch'), 'tokenizer.json')], bare: true }) },
  { name: 'model-dev-zero', expect: 'refuse', mentions: /it is a device/, cli: true, setup: (_c, d) => (symlinkSync('/dev/zero', join(d, 'zero.onnx')), { args: ['inspect', join(d, 'zero.onnx')], bare: true }) },
  {
    name: 'tokenizer-fifo-needed',
    expect: 'refuse',
    mentions: /it is a FIFO/,
    cli: true,
    setup: (c, d) => {
      const m = model(c, d);
      rmSync(join(d, 'm', 'tokenizer.json'));
      fifo(join(d, 'm', 'tokenizer.json'));
      return { args: [m, '--weights', 'rtn-ternary', '--acts', '8', '--calib', c.calibPath, '--calib-samples', '2', '--seq', '32'] };
    },
  },
  {
    name: 'tokenizer-fifo-unneeded',
    expect: 'accept',
    cli: true,
    setup: (c, d) => {
      const m = model(c, d);
      rmSync(join(d, 'm', 'tokenizer.json'));
      fifo(join(d, 'm', 'tokenizer.json'));
      return { args: [m, ...RTN] };
    },
  },
  {
    name: 'config-fifo',
    expect: 'refuse',
    mentions: /it is a FIFO/,
    cli: true,
    setup: (c, d) => {
      const m = model(c, d);
      rmSync(join(d, 'm', 'config.json'));
      fifo(join(d, 'm', 'config.json'));
      return { args: [m, ...RTN] };
    },
  },
  { name: 'calib-dev-zero', expect: 'refuse', mentions: /it is a device/, cli: true, setup: (c, d) => ({ args: [model(c, d), '--weights', 'rtn-ternary', '--acts', '8', '--calib', '/dev/zero'] }) },
  { name: 'sigterm-mid-compile', expect: 'refuse', cli: true, setup: (c) => ({ args: [join(c.slowDir, 'model.onnx'), ...RTN], signal: 'SIGTERM', exits: [143] }) },
  { name: 'sigkill-mid-compile', expect: 'refuse', cli: true, setup: (c) => ({ args: [join(c.slowDir, 'model.onnx'), ...RTN], signal: 'SIGKILL', exits: [137] }) },
  {
    name: 'sigint-mid-compile-earlier-out-survives',
    expect: 'refuse',
    cli: true,
    setup: (c, d) => {
      mkdirSync(join(d, 'out'));
      writeFileSync(join(d, 'out', 'manifest.json'), JSON.stringify({ kind: 'twlac-artifact', files: { 'weights.bin': 3 } }));
      writeFileSync(join(d, 'out', 'weights.bin'), 'old');
      return { args: [join(c.slowDir, 'model.onnx'), ...RTN, '--force'], signal: 'SIGINT', exits: [130] };
    },
  },
];

function cliCase(c: Corpus, n: number, k: CliKind): FuzzCase {
  return { id: `cli/${k.name}#${n}`, category: 'cli', expect: k.expect, cli: k.cli, mentions: k.mentions, setup: (dir) => k.setup(c, dir) };
}

// ------------------------------------------------------------------ hostile sizes

const SIZE_KINDS: { name: string; cli?: boolean; setup(c: Corpus, dir: string): CaseSetup }[] = [
  {
    name: 'external-100GB-tensor',
    cli: true,
    setup(c, dir) {
      const l = loadCopy(c, dir, 'torch');
      const t = byName(l.msg, 'model.embed_tokens.weight');
      t.dims = [25_000_000, 1024]; // 102.4 GB of float32
      setLocation(t, 'length', String(25_000_000 * 1024 * 4));
      l.save();
      return { args: [l.path, ...RTN] };
    },
  },
  {
    name: 'inline-100GB-tensor',
    setup(c, dir) {
      const l = loadCopy(c, dir, 'torch', true);
      byName(l.msg, 'model.embed_tokens.weight').dims = [25_000_000, 1024];
      l.save();
      return { args: [l.path, ...RTN] };
    },
  },
  {
    name: 'input-dims-2^40',
    setup(c, dir) {
      const l = loadCopy(c, dir, 'torch');
      const shape = l.msg.graph!.input![0].type!.tensor_type!.shape!;
      shape.dim = [{ dim_value: 2 ** 20 }, { dim_value: 2 ** 20 }];
      l.save();
      return { args: [l.path, ...RTN] };
    },
  },
  {
    name: 'sparse-3GB-model-file',
    cli: true,
    setup(_c, dir) {
      writeFileSync(join(dir, 'big.onnx'), '');
      truncateSync(join(dir, 'big.onnx'), 3 * 2 ** 30);
      return { args: [join(dir, 'big.onnx'), ...RTN] };
    },
  },
  {
    name: 'sparse-3GB-tokenizer',
    setup(c, dir) {
      const m = model(c, dir);
      truncateSync(join(dir, 'm', 'tokenizer.json'), 3 * 2 ** 30);
      return { args: [m, '--weights', 'rtn-ternary', '--acts', '8', '--calib', c.calibPath] };
    },
  },
  {
    name: 'varint-length-2GB',
    setup(_c, dir) {
      // Field 7 (graph), wire type 2, with a length prefix of 2^31 and no bytes behind it.
      writeFileSync(join(dir, 'm.onnx'), Uint8Array.from([0x08, 0x0a, 0x3a, 0x80, 0x80, 0x80, 0x80, 0x08, 0x01, 0x02]));
      return { args: [join(dir, 'm.onnx'), ...RTN] };
    },
  },
];

function sizeCase(c: Corpus, n: number, k: (typeof SIZE_KINDS)[number]): FuzzCase {
  return { id: `size/${k.name}#${n}`, category: 'size', expect: k.name === 'input-dims-2^40' ? 'either' : 'refuse', cli: k.cli, setup: (dir) => k.setup(c, dir) };
}

// ------------------------------------------------------------------ the case list

export interface CaseCounts {
  protobuf: number;
  semantic: number;
  external: number;
  text: number;
  /** Rounds over every command-line kind and every size kind. */
  rounds: number;
}

/** Every semantic, external and text kind at least once; about 200 cases in all. */
export const QUICK: CaseCounts = { protobuf: 45, semantic: SEMANTIC.length * 2, external: EXTERNAL.length * 2, text: TEXT_KINDS.length, rounds: 1 };
export const LONG: CaseCounts = { protobuf: 2000, semantic: 2000, external: 400, text: 400, rounds: 6 };

/** The cases for a seed: the same seed gives the same cases (and the same damaged files). */
export function makeCases(c: Corpus, seed: number, counts: CaseCounts): FuzzCase[] {
  const r = mulberry32(seed);
  const out: FuzzCase[] = [];
  for (let i = 0; i < counts.protobuf; i++) out.push(protobufCase(c, i, r));
  for (let i = 0; i < counts.semantic; i++) out.push(semanticCase(c, i, r));
  for (let i = 0; i < counts.external; i++) out.push(externalCase(c, i, r));
  for (let i = 0; i < counts.text; i++) out.push(textCase(c, i, r));
  for (let round = 0; round < counts.rounds; round++) {
    CLI_KINDS.forEach((k) => out.push(cliCase(c, round, k)));
    SIZE_KINDS.forEach((k) => out.push(sizeCase(c, round, k)));
  }
  return out;
}
