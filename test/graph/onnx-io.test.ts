// ONNX load/save: real exports round-trip bit-identically under onnxruntime; every element
// type survives typed fields and raw_data byte-exactly (sub-byte and half types checked
// against onnxruntime and a float64 reference); bad files give one-line UserErrors.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { Model, Node, Value } from '../../src/graph/ir.ts';
import { decodeModel, encodeModel, loadModel, saveModel } from '../../src/graph/onnx.ts';
import { ModelProto, decodeKeepingUnknowns, encode, type ModelMsg, type TensorMsg } from '../../src/graph/proto/schema.ts';
import { DTYPES, Tensor, halfToFloat, type DType } from '../../src/graph/tensor.ts';

const SHARED_MODELS = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/models');
const FIXTURES = {
  fp32: join(SHARED_MODELS, 'pydocs-llama-12m/model.onnx'),
  kv: join(SHARED_MODELS, 'pydocs-llama-12m-kv-fp16/model.onnx'),
  fused: join(SHARED_MODELS, 'pydocs-llama-12m-fused-fp16/model.onnx'),
};
const haveFixtures = Object.values(FIXTURES).every((p) => existsSync(p));
if (!haveFixtures) console.warn(`skipping ONNX fixture round trips: ${SHARED_MODELS} not found`);

const tmp = mkdtempSync(join(tmpdir(), 'twlac-onnx-io-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let dirCount = 0;
const freshDir = (): string => {
  const d = join(tmp, `d${dirCount++}`);
  mkdirSync(d);
  return d;
};

type Feeds = Record<string, ort.Tensor>;

async function runOrt(path: string, feeds: Feeds): Promise<Map<string, Uint8Array>> {
  const session = await ort.InferenceSession.create(path);
  try {
    const out = await session.run(feeds);
    return new Map(
      Object.entries(out).map(([k, t]) => {
        const d = t.data as Float32Array;
        return [k, new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice()];
      }),
    );
  } finally {
    await session.release();
  }
}

const SEQ = 16;
const inputIds = () => new ort.Tensor('int64', BigInt64Array.from({ length: SEQ }, (_, i) => BigInt((i * 977 + 13) % 4096)), [1, SEQ]);

function kvFeeds(): Feeds {
  const feeds: Feeds = {
    input_ids: inputIds(),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(SEQ).fill(1n), [1, SEQ]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: SEQ }, (_, i) => BigInt(i)), [1, SEQ]),
  };
  for (let i = 0; i < 6; i++) {
    for (const kind of ['key', 'value']) feeds[`past_key_values.${i}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, 2, 0, 64]);
  }
  return feeds;
}

function initializerBytes(m: Model): Map<string, Uint8Array> {
  return new Map([...m.graph.initializers].map(([k, v]) => [k, v.constValue!.bytes()]));
}

describe.skipIf(!haveFixtures)('real exports round-trip', () => {
  const cases: [string, string, () => Feeds][] = [
    ['fp32 (4 data files)', FIXTURES.fp32, () => ({ input_ids: inputIds() })],
    ['KV-cache fp16', FIXTURES.kv, kvFeeds],
    ['fused fp16', FIXTURES.fused, () => ({ input_ids: inputIds() })],
  ];
  for (const [label, src, feeds] of cases) {
    it(`${label}: load, save, same outputs in onnxruntime, same weights`, async () => {
      const m = loadModel(src);
      expect(m.irVersion).toBe(10);
      expect(m.opset('')).toBe(18);
      const external = [...m.graph.initializers.values()].filter((v) => v.constValue!.isExternal);
      expect(external.length).toBe(44);
      for (const v of external) {
        const s = v.constValue!.source;
        expect(s.kind === 'external' && s.path.startsWith(dirname(src))).toBe(true);
      }
      expect(m.graph.inputs[0].type).toEqual({ dtype: 'int64', shape: ['batch', src === FIXTURES.kv ? 'seq' : 'sequence'] });

      const out = join(freshDir(), 'model.onnx');
      const { files } = saveModel(m, out);
      const dataPath = `${out}.data`;
      expect(Object.keys(files).sort()).toEqual([out, dataPath].sort());
      expect(files[dataPath]).toBe(statSync(dataPath).size);
      // Every initializer of 1024 bytes or more goes to the one data file, 64-byte aligned.
      const large = [...m.graph.initializers.values()].filter((v) => v.constValue!.byteLength >= 1024);
      const weightBytes = large.reduce((a, v) => a + v.constValue!.byteLength, 0);
      expect(files[dataPath]).toBeGreaterThanOrEqual(weightBytes);
      expect(files[dataPath]).toBeLessThan(weightBytes + 64 * large.length);

      const [a, b] = [await runOrt(src, feeds()), await runOrt(out, feeds())];
      expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
      for (const [k, v] of a) expect(Buffer.compare(v, b.get(k)!), `output ${k}`).toBe(0);

      for (const v of m.graph.initializers.values()) {
        const t = v.constValue!;
        if (!t.isExternal) expect(t.bytes().byteOffset % 8, `${v.name} is stored aligned`).toBe(0);
      }

      const again = loadModel(out);
      expect(again.graph.nodes.map((n) => n.opType)).toEqual(m.graph.nodes.map((n) => n.opType));
      const [wa, wb] = [initializerBytes(m), initializerBytes(again)];
      for (const [k, v] of wa) expect(Buffer.compare(v, wb.get(k)!), k).toBe(0);
    });
  }

  it('keeps fields twlac does not interpret (node metadata_props) through a round trip', () => {
    const original = decodeKeepingUnknowns<ModelMsg>(ModelProto, readFileSync(FIXTURES.fp32));
    const out = join(freshDir(), 'model.onnx');
    saveModel(loadModel(FIXTURES.fp32), out);
    const saved = decodeKeepingUnknowns<ModelMsg>(ModelProto, readFileSync(out));
    const unknowns = (msg: ModelMsg) => msg.graph!.node!.map((n) => Buffer.concat(n.$unknowns ?? []).toString('hex'));
    expect(unknowns(original).filter((u) => u.length).length).toBe(495);
    expect(unknowns(saved)).toEqual(unknowns(original));
    expect(saved.graph!.value_info!.length).toBe(original.graph!.value_info!.length);
    for (const k of ['ir_version', 'producer_name', 'producer_version', 'opset_import', 'metadata_props'] as const) {
      expect(JSON.stringify(saved[k]), k).toBe(JSON.stringify(original[k]));
    }
  });
});

// ---- element types: typed fields vs raw_data

/** A test tensor: its raw bytes (by onnx.proto's raw_data rules) and the same data in its typed field. */
interface Case {
  dtype: DType;
  dims: number[];
  raw: Uint8Array;
  typed: Partial<TensorMsg>;
}

function packBits(vals: number[], bits: number): Uint8Array {
  const out = new Uint8Array(Math.ceil((vals.length * bits) / 8));
  const mask = (1 << bits) - 1;
  vals.forEach((v, i) => (out[Math.floor((i * bits) / 8)] |= (v & mask) << ((i * bits) % 8)));
  return out;
}

function typeCases(): Case[] {
  const halfBits = [0x0000, 0x8000, 0x3c00, 0xbc00, 0x7bff, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x7e00, 0x3555];
  const int64s = [0n, 1n, -1n, 2n ** 62n + 1n, -(2n ** 63n), 2n ** 63n - 1n, 1234567890123n];
  const i4 = [-8, -7, -1, 0, 1, 6, 7];
  const u4 = [0, 1, 8, 15, 9, 3, 14];
  const i2 = [-2, -1, 0, 1, 1, 0, -1];
  const u2 = [0, 1, 2, 3, 3, 2, 1];
  const le16 = (v: number[]) => new Uint8Array(Uint16Array.from(v).buffer);
  return [
    { dtype: 'float16', dims: [11], raw: le16(halfBits), typed: { int32_data: halfBits } },
    { dtype: 'bfloat16', dims: [11], raw: le16(halfBits), typed: { int32_data: halfBits } },
    { dtype: 'int64', dims: [7], raw: new Uint8Array(BigInt64Array.from(int64s).buffer), typed: { int64_data: int64s.map((x) => longOf(x) as never) } },
    { dtype: 'float32', dims: [3], raw: new Uint8Array(Float32Array.of(1.5, -0, 3e-40).buffer), typed: { float_data: [1.5, -0, 3e-40] } },
    { dtype: 'float64', dims: [2], raw: new Uint8Array(Float64Array.of(Math.PI, -1e300).buffer), typed: { double_data: [Math.PI, -1e300] } },
    { dtype: 'int8', dims: [3], raw: Uint8Array.of(0x80, 0xff, 0x7f), typed: { int32_data: [-128, -1, 127] } },
    { dtype: 'bool', dims: [3], raw: Uint8Array.of(1, 0, 1), typed: { int32_data: [1, 0, 1] } },
    { dtype: 'int32', dims: [2], raw: new Uint8Array(Int32Array.of(-5, 2 ** 31 - 1).buffer), typed: { int32_data: [-5, 2 ** 31 - 1] } },
    // Sub-byte types: int32_data holds the packed bytes (two 4-bit or four 2-bit elements each).
    { dtype: 'int4', dims: [7], raw: packBits(i4, 4), typed: { int32_data: [...packBits(i4, 4)] } },
    { dtype: 'uint4', dims: [7], raw: packBits(u4, 4), typed: { int32_data: [...packBits(u4, 4)] } },
    { dtype: 'int2', dims: [7], raw: packBits(i2, 2), typed: { int32_data: [...packBits(i2, 2)] } },
    { dtype: 'uint2', dims: [7], raw: packBits(u2, 2), typed: { int32_data: [...packBits(u2, 2)] } },
  ];
}

function longOf(x: bigint): { low: number; high: number; unsigned: boolean } {
  const u = BigInt.asUintN(64, x);
  return { low: Number(u & 0xffffffffn) | 0, high: Number(u >> 32n) | 0, unsigned: false };
}

function modelOf(cases: Case[]): Model {
  const b = new GraphBuilder();
  cases.forEach((c, i) => b.output(b.op('Identity', [b.init(`w${i}_${c.dtype}`, Tensor.fromBytes(c.dtype, c.dims, c.raw))])));
  return b.model(25);
}

/** Re-encode a model with every initializer's data moved from raw_data to its typed field. */
function withTypedFields(bytes: Uint8Array, cases: Case[]): Uint8Array {
  const msg = decodeKeepingUnknowns<ModelMsg>(ModelProto, bytes);
  msg.graph!.initializer = msg.graph!.initializer!.map((t, i) => {
    const { raw_data: _, ...rest } = t;
    return { ...rest, ...cases[i].typed } as TensorMsg;
  });
  return encode(ModelProto, msg);
}

describe('element types', () => {
  it('typed fields and raw_data decode to the same bytes, and survive inline and external saves', () => {
    const cases = typeCases();
    const raw = encodeModel(modelOf(cases));
    const typed = withTypedFields(raw, cases);
    expect(typed.byteLength).not.toBe(raw.byteLength);
    for (const bytes of [raw, typed]) {
      const m = decodeModel(bytes, tmp);
      const inits = [...m.graph.initializers.values()];
      cases.forEach((c, i) => {
        expect(inits[i].constValue!.dtype).toBe(c.dtype);
        expect([...inits[i].constValue!.bytes()], c.dtype).toEqual([...c.raw]);
      });
      for (const threshold of [0, 1024]) {
        const out = join(freshDir(), 'm.onnx');
        saveModel(m, out, { sizeThreshold: threshold });
        expect(existsSync(`${out}.data`)).toBe(threshold === 0);
        const back = [...loadModel(out).graph.initializers.values()];
        cases.forEach((c, i) => {
          expect(back[i].constValue!.isExternal).toBe(threshold === 0);
          expect([...back[i].constValue!.bytes()], c.dtype).toEqual([...c.raw]);
        });
      }
    }
  });

  it('4-bit and 2-bit initializers dequantize in onnxruntime to the float64 reference', async () => {
    const subByte = typeCases().filter((c) => DTYPES[c.dtype].bits < 8);
    const values: Record<string, number[]> = { int4: [-8, -7, -1, 0, 1, 6, 7], uint4: [0, 1, 8, 15, 9, 3, 14], int2: [-2, -1, 0, 1, 1, 0, -1], uint2: [0, 1, 2, 3, 3, 2, 1] };
    const zeroPoint: Record<string, number> = { int4: -3, uint4: 5, int2: -1, uint2: 2 };
    const scale = 0.375;
    for (const c of subByte) {
      const b = new GraphBuilder();
      const q = b.init('q', Tensor.fromBytes(c.dtype, c.dims, c.raw));
      const s = b.f32('scale', [], [scale]);
      const zp = b.init('zp', Tensor.fromBytes(c.dtype, [], packBits([zeroPoint[c.dtype]], DTYPES[c.dtype].bits)));
      b.output(b.op('DequantizeLinear', [q, s, zp]), 'y');
      const model = b.model(25);
      model.irVersion = 12;
      const raw = encodeModel(model);
      // Typed-field variant of the same model: int32_data for q and zp.
      const msg = decodeKeepingUnknowns<ModelMsg>(ModelProto, raw);
      for (const t of msg.graph!.initializer!) {
        if (t.data_type === DTYPES.float32.code) continue;
        t.int32_data = [...t.raw_data!];
        delete t.raw_data;
      }
      const typed = encode(ModelProto, msg);
      const want = values[c.dtype].map((v) => (v - zeroPoint[c.dtype]) * scale);
      for (const bytes of [raw, typed]) {
        const out = join(freshDir(), 'dq.onnx');
        saveModel(decodeModel(bytes, tmp), out);
        const y = (await runOrt(out, {})).get('y')!;
        expect([...new Float32Array(y.buffer)], c.dtype).toEqual(want);
      }
    }
  });

  it('float16 and bfloat16 initializers cast in onnxruntime to the float64 decoding of their bits', async () => {
    for (const c of typeCases().filter((x) => x.dtype === 'float16' || x.dtype === 'bfloat16')) {
      const b = new GraphBuilder();
      b.output(b.op('Cast', [b.init('h', Tensor.fromBytes(c.dtype, c.dims, c.raw))], { attrs: { to: DTYPES.float32.code } }), 'y');
      const out = join(freshDir(), 'cast.onnx');
      saveModel(decodeModel(withTypedFields(encodeModel(b.model(18)), [c]), tmp), out);
      const y = [...new Float32Array((await runOrt(out, {})).get('y')!.buffer)];
      const bits = [...new Uint16Array(c.raw.buffer)];
      const ref = bits.map((h) => (c.dtype === 'float16' ? halfToFloat(h) : new Float32Array(Uint32Array.of(h << 16).buffer)[0]));
      expect(y, c.dtype).toEqual(ref);
    }
  });
});

describe('external data layout', () => {
  const twoWeights = () => {
    const b = new GraphBuilder();
    const w1 = b.f32('w1', [375], Float32Array.from({ length: 375 }, (_, i) => i / 7));
    const w2 = b.f32('w2', [1024], Float32Array.from({ length: 1024 }, (_, i) => -i));
    b.output(b.op('Identity', [w1]), 'y1');
    b.output(b.op('Identity', [w2]), 'y2');
    return b.model(18);
  };
  const externalData = (path: string) =>
    decodeKeepingUnknowns<ModelMsg>(ModelProto, readFileSync(path)).graph!.initializer!.map((t) => Object.fromEntries(t.external_data!.map((e) => [e.key, e.value])));

  it('puts tensors at 64-byte aligned offsets of one file', () => {
    const out = join(freshDir(), 'model.onnx');
    const { files } = saveModel(twoWeights(), out);
    expect(externalData(out)).toEqual([
      { location: 'model.onnx.data', offset: '0', length: '1500' },
      { location: 'model.onnx.data', offset: '1536', length: '4096' },
    ]);
    expect(files[`${out}.data`]).toBe(1536 + 4096);
    expect(readFileSync(`${out}.data`).subarray(1500, 1536).every((x) => x === 0)).toBe(true);
  });

  it('reads external data without a length to the end of the file', () => {
    const out = join(freshDir(), 'model.onnx');
    const m = twoWeights();
    saveModel(m, out);
    const msg = decodeKeepingUnknowns<ModelMsg>(ModelProto, readFileSync(out));
    const last = msg.graph!.initializer![1];
    last.external_data = last.external_data!.filter((e) => e.key !== 'length');
    writeFileSync(out, encode(ModelProto, msg));
    const back = loadModel(out).graph.initializers.get('w2')!.constValue!;
    expect(back.source).toMatchObject({ kind: 'external', offset: 1536, length: 4096 });
    expect([...back.bytes()]).toEqual([...m.graph.initializers.get('w2')!.constValue!.bytes()]);
    truncateSync(`${out}.data`, 1536 + 4000);
    expect(() => loadModel(out)).toThrow(/^external data for initializer 'w2' is too short: .* has 5536 bytes, the tensor needs bytes 1536\.\.5632$/);
  });

  it('refuses to write the model file over a data file it reads from', () => {
    const out = join(freshDir(), 'model.onnx');
    saveModel(twoWeights(), out);
    expect(() => saveModel(loadModel(out), `${out}.data`)).toThrow(UserError);
    expect(statSync(`${out}.data`).size).toBe(1536 + 4096);
  });
});

describe('model fields', () => {
  it('keeps ir_version, producer, opsets, metadata_props, doc strings and model-level fields twlac does not interpret', () => {
    const b = new GraphBuilder();
    b.output(b.op('Relu', [b.input('x', { dtype: 'float32', shape: ['n', 3, undefined] })]), 'y');
    const m = b.model(21, [{ domain: 'com.microsoft', version: 1 }]);
    m.irVersion = 11;
    m.producerName = 'p';
    m.producerVersion = '1.2';
    m.docString = 'doc';
    m.metadataProps.set('k', 'v');
    // A FunctionProto (field 25) with name 'f' and domain 'custom', appended as a raw field.
    const fn = Uint8Array.of(0x0a, 1, 0x66, 0x52, 6, ...new TextEncoder().encode('custom'));
    const bytes = Buffer.concat([encodeModel(m), Uint8Array.of(0xca, 0x01, fn.length), fn]);
    const back = decodeModel(bytes, tmp);
    expect([back.irVersion, back.producerName, back.producerVersion, back.docString]).toEqual([11, 'p', '1.2', 'doc']);
    expect(back.opsetImports).toEqual([{ domain: '', version: 21 }, { domain: 'com.microsoft', version: 1 }]);
    expect([...back.metadataProps]).toEqual([['k', 'v']]);
    expect(back.graph.inputs[0].type).toEqual({ dtype: 'float32', shape: ['n', 3, undefined] });
    expect(back.opaqueFunctions.map((f) => [...f])).toEqual([[0xca, 0x01, fn.length, ...fn]]);
    expect(Buffer.compare(encodeModel(back), bytes)).toBe(0);
  });
});

describe('graph structure', () => {
  it('subgraphs read outer values through the same Value objects, and run after a round trip', async () => {
    const b = new GraphBuilder();
    const x = b.input('x', { dtype: 'float32', shape: [3] });
    const cond = b.input('c', { dtype: 'bool', shape: [] });
    const w = b.f32('w', [3], [1, 2, 3]);
    const branch = (op: string) => {
      const g = new GraphBuilder();
      g.output(g.op(op, [x, w]), `${op.toLowerCase()}_y`);
      return g.graph;
    };
    b.output(b.op('If', [cond], { attrs: { then_branch: { type: 'graph', value: branch('Add') }, else_branch: { type: 'graph', value: branch('Mul') } } }), 'y');
    const out = join(freshDir(), 'if.onnx');
    saveModel(b.model(18), out);
    const m = loadModel(out);
    const then = m.graph.nodes[0].attr('then_branch', 'graph')!;
    expect(then.nodes[0].input(0)).toBe(m.graph.inputs[0]);
    expect(then.nodes[0].input(1)).toBe(m.graph.initializers.get('w'));
    const again = join(freshDir(), 'if.onnx');
    saveModel(m, again);
    for (const [c, want] of [[1, [11, 22, 33]], [0, [10, 40, 90]]] as const) {
      const feeds = { x: new ort.Tensor('float32', Float32Array.of(10, 20, 30), [3]), c: new ort.Tensor('bool', Uint8Array.of(c), []) };
      expect([...new Float32Array((await runOrt(again, feeds)).get('y')!.buffer)]).toEqual(want);
    }
  });

  it('saving onto the data file the model reads from writes a new file and keeps the model readable', () => {
    const b = new GraphBuilder();
    const w = Float32Array.from({ length: 4096 }, (_, i) => Math.sin(i));
    b.output(b.op('Identity', [b.f32('w', [4096], w)]), 'y');
    const out = join(freshDir(), 'm.onnx');
    saveModel(b.model(18), out);
    const m = loadModel(out);
    expect(m.graph.initializers.get('w')!.constValue!.isExternal).toBe(true);
    // A second weight moves w's offset in the rewritten file.
    m.graph.addInitializer('v', Tensor.fromFloat32([1024], new Float32Array(1024).fill(7)));
    m.graph.nodes[0].setInput(0, m.graph.initializers.get('v'));
    const z = new Value('z');
    m.graph.addNode(new Node('Identity', [m.graph.initializers.get('w')], [z]));
    m.graph.outputs.push(z);
    saveModel(m, out);
    expect(existsSync(`${out}.data.tmp-${process.pid}`)).toBe(false);
    expect(new Float32Array(m.graph.initializers.get('w')!.constValue!.bytes().slice().buffer)).toEqual(w);
    expect(new Float32Array(loadModel(out).graph.initializers.get('w')!.constValue!.bytes().slice().buffer)).toEqual(w);
  });
});

describe('bad inputs give one-line UserErrors', () => {
  const smallExternalModel = (): string => {
    const b = new GraphBuilder();
    b.output(b.op('Identity', [b.f32('weight', [1024], new Float32Array(1024).fill(0.5))]), 'y');
    const out = join(freshDir(), 'model.onnx');
    saveModel(b.model(18), out);
    return out;
  };
  const expectUserError = (f: () => unknown, pattern: RegExp) => {
    let err: unknown;
    try {
      f();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    const msg = (err as Error).message;
    expect(msg).toMatch(pattern);
    expect(msg).not.toContain('\n');
  };

  it('a file that is not ONNX', () => {
    const p = join(freshDir(), 'notes.onnx');
    writeFileSync(p, 'This is a text file, not a protobuf model.\n'.repeat(20));
    expectUserError(() => loadModel(p), /^not an ONNX model: .*notes\.onnx: /);
    const rand = join(freshDir(), 'random.onnx');
    let s = 12345;
    writeFileSync(rand, Uint8Array.from({ length: 4096 }, () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 24)));
    expectUserError(() => loadModel(rand), /^not an ONNX model: .*random\.onnx: /);
  });

  it('an empty file', () => {
    const p = join(freshDir(), 'empty.onnx');
    writeFileSync(p, '');
    expectUserError(() => loadModel(p), /^not an ONNX model: .*empty\.onnx: the file is empty$/);
  });

  it('a truncated model.onnx', () => {
    const src = smallExternalModel();
    const bytes = readFileSync(src);
    for (const cut of [Math.floor(bytes.length / 2), bytes.length - 3, 5]) {
      const p = join(freshDir(), 'cut.onnx');
      writeFileSync(p, bytes.subarray(0, cut));
      expectUserError(() => loadModel(p), /^not an ONNX model: .*cut\.onnx: truncated or corrupt protobuf/);
    }
  });

  it('a model with no graph', () => {
    const p = join(freshDir(), 'nograph.onnx');
    writeFileSync(p, encode(ModelProto, { ir_version: 10, opset_import: [{ domain: '', version: 18 }] }));
    expectUserError(() => loadModel(p), /^not an ONNX model: .*nograph\.onnx: it has no graph$/);
  });

  it('a missing external data file', () => {
    const src = smallExternalModel();
    const p = join(freshDir(), 'model.onnx');
    copyFileSync(src, p);
    expectUserError(() => loadModel(p), /^external data for initializer 'weight' is missing: .*model\.onnx\.data$/);
  });

  it('a short external data file', () => {
    const src = smallExternalModel();
    truncateSync(`${src}.data`, 1000);
    expectUserError(() => loadModel(src), /^external data for initializer 'weight' is too short: .*model\.onnx\.data has 1000 bytes, the tensor needs bytes 0\.\.4096$/);
  });
});
