// Tensors of the IR. Data is held behind a `TensorSource` so that weights that live in
// external data files are read only when somebody asks for them (and can be written back
// by streaming, without ever being resident all at once).
import { readSync, openSync, closeSync, fstatSync } from 'node:fs';
import { halfToFloat } from '../util/half.ts';

export { floatToHalf, halfToFloat, roundToHalf } from '../util/half.ts';
import { UserError } from '../errors.ts';

/** ONNX element types, by the names twlac uses. Codes are onnx.proto's TensorProto.DataType. */
export const DTYPES = {
  float32: { code: 1, bits: 32 },
  uint8: { code: 2, bits: 8 },
  int8: { code: 3, bits: 8 },
  uint16: { code: 4, bits: 16 },
  int16: { code: 5, bits: 16 },
  int32: { code: 6, bits: 32 },
  int64: { code: 7, bits: 64 },
  string: { code: 8, bits: 0 },
  bool: { code: 9, bits: 8 },
  float16: { code: 10, bits: 16 },
  float64: { code: 11, bits: 64 },
  uint32: { code: 12, bits: 32 },
  uint64: { code: 13, bits: 64 },
  bfloat16: { code: 16, bits: 16 },
  uint4: { code: 21, bits: 4 },
  int4: { code: 22, bits: 4 },
  int2: { code: 26, bits: 2 },
  uint2: { code: 25, bits: 2 },
} as const;
export type DType = keyof typeof DTYPES;

export function numel(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Bytes of raw (little-endian, packed) storage for `n` elements. Sub-byte types pack low bits first. */
export function rawByteLength(dtype: DType, n: number): number {
  return Math.ceil((n * DTYPES[dtype].bits) / 8);
}

/** Where a tensor's bytes come from. */
export type TensorSource =
  | { kind: 'bytes'; bytes: Uint8Array }
  | { kind: 'external'; path: string; offset: number; length: number };

export class Tensor {
  constructor(
    readonly dtype: DType,
    readonly dims: readonly number[],
    public source: TensorSource,
  ) {
    const want = rawByteLength(dtype, numel(dims));
    const have = source.kind === 'bytes' ? source.bytes.byteLength : source.length;
    if (dtype !== 'string' && have !== want) {
      throw new Error(`tensor [${dims.join(',')}] ${dtype} needs ${want} bytes, has ${have}`);
    }
  }

  static fromBytes(dtype: DType, dims: readonly number[], bytes: Uint8Array): Tensor {
    return new Tensor(dtype, dims, { kind: 'bytes', bytes });
  }

  static fromFloat32(dims: readonly number[], data: Float32Array): Tensor {
    return Tensor.fromBytes('float32', dims, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  static fromInt64(dims: readonly number[], data: readonly (number | bigint)[]): Tensor {
    const a = BigInt64Array.from(data, (x) => BigInt(x));
    return Tensor.fromBytes('int64', dims, new Uint8Array(a.buffer));
  }

  get numel(): number {
    return numel(this.dims);
  }

  get byteLength(): number {
    return this.source.kind === 'bytes' ? this.source.bytes.byteLength : this.source.length;
  }

  get isExternal(): boolean {
    return this.source.kind === 'external';
  }

  /** The raw little-endian bytes. Reads external data from disk on each call (no caching). */
  bytes(): Uint8Array {
    const s = this.source;
    if (s.kind === 'bytes') return s.bytes;
    return readExternal(s.path, s.offset, s.length);
  }

  /** Values as float32 (from float32/float16/bfloat16/float64/int types). */
  toFloat32(): Float32Array {
    const b = this.bytes();
    const n = this.numel;
    const aligned = b.byteOffset % 8 === 0 ? b : new Uint8Array(b);
    const buf = aligned.buffer;
    const off = aligned.byteOffset;
    switch (this.dtype) {
      case 'float32':
        return new Float32Array(buf.slice(off, off + n * 4));
      case 'float16': {
        const h = new Uint16Array(buf, off, n);
        const out = new Float32Array(n);
        for (let i = 0; i < n; i++) out[i] = halfToFloat(h[i]);
        return out;
      }
      case 'bfloat16': {
        const h = new Uint16Array(buf, off, n);
        const u = new Uint32Array(n);
        for (let i = 0; i < n; i++) u[i] = h[i] << 16;
        return new Float32Array(u.buffer);
      }
      case 'float64':
        return Float32Array.from(new Float64Array(buf, off, n));
      case 'int64':
        return Float32Array.from(new BigInt64Array(buf, off, n), (x) => Number(x));
      case 'int32':
        return Float32Array.from(new Int32Array(buf, off, n));
      case 'int8':
        return Float32Array.from(new Int8Array(buf, off, n));
      case 'uint8':
      case 'bool':
        return Float32Array.from(new Uint8Array(buf, off, n));
      default:
        throw new Error(`toFloat32: unsupported dtype ${this.dtype}`);
    }
  }

  /** Integer values as plain numbers (int64/int32/... tensors: shapes, axes, indices). */
  toNumbers(): number[] {
    const b = this.bytes();
    const c = new Uint8Array(b);
    const n = this.numel;
    switch (this.dtype) {
      case 'int64':
        return Array.from(new BigInt64Array(c.buffer, 0, n), (x) => Number(x));
      case 'int32':
        return Array.from(new Int32Array(c.buffer, 0, n));
      default:
        return Array.from(this.toFloat32());
    }
  }
}

/** Bytes of external data; the file was checked at load, so a failure here means it changed since. */
export function readExternal(path: string, offset: number, length: number): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new UserError(`external data ${path} can no longer be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    if (offset + length > size) {
      throw new UserError(`external data ${path} is too short: need bytes ${offset}..${offset + length}, file has ${size}`);
    }
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const r = readSync(fd, out, done, length - done, offset + done);
      if (r <= 0) throw new UserError(`external data ${path}: short read at ${offset + done}`);
      done += r;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
