// `twlac/tfjs`: what a TF.js GraphModel written by `twlac --target tfjs` needs at run time.
// Import it (or call registerTwlacOps) before tf.loadGraphModel:
//
//   import * as tf from '@tensorflow/tfjs';   // or tfjs-core + tfjs-converter + a backend
//   import { registerTwlacOps } from 'twlac/tfjs';
//   registerTwlacOps();
//   const model = await tf.loadGraphModel('out/tfjs/model.json');
//
// The ternary linears stay packed in the weight shards and in memory. They run as the
// custom op TwlacTernaryMatMul (op.ts):
// - cpu, webgpu: a kernel on the packed codes (cpu.ts, webgpu.ts);
// - any other backend (webgl, wasm): dequantise on first use. The op decodes its weight
//   once with the format's reference decoder into a dense float32 matrix that it keeps
//   for the model's lifetime (4 bytes per weight), then runs tf.matMul.
import * as tf from '@tensorflow/tfjs-core';
import { registerOp, type GraphNode } from '@tensorflow/tfjs-converter';
import { decodeTernary, parseFormatId, type TernaryFormat } from '../../formats/ternary.ts';
import { floatToHalf } from '../../util/half.ts';
import { ternaryMatMul } from './cpu.ts';
import { TERNARY_MATMUL_OP, type TernaryMatMulAttrs } from './op.ts';
import { ternaryMatMulProgram, type TernaryMatMulProgram } from './webgpu.ts';

export { TERNARY_MATMUL_OP } from './op.ts';

/** Backends with a kernel on the packed codes; the op dequantises on every other. */
export const PACKED_KERNEL_BACKENDS = ['cpu', 'webgpu'] as const;

interface KernelInputs {
  x: tf.TensorInfo;
  codes: tf.TensorInfo;
  scales: tf.TensorInfo;
  shifts?: tf.TensorInfo;
}

/** The parts of tfjs's CPU backend the kernel uses. */
interface CpuBackend {
  readSync(id: tf.DataId): unknown;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
}

/** The part of tfjs's WebGPU backend the kernel uses. */
interface WebgpuBackend {
  runWebGPUProgram(program: TernaryMatMulProgram, inputs: tf.TensorInfo[], dtype: tf.DataType): tf.TensorInfo;
}

function kernelInputs(inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap) {
  const { x, codes, scales, shifts } = inputs as unknown as KernelInputs;
  const a = attrs as unknown as TernaryMatMulAttrs;
  const format = parseFormatId(a.format);
  if (format.shift !== !!shifts) throw new Error(`${TERNARY_MATMUL_OP}: format ${format.id} ${format.shift ? 'needs' : 'takes no'} shifts`);
  const m = x.shape[0];
  if (x.shape.length !== 2 || x.shape[1] !== a.cols) throw new Error(`${TERNARY_MATMUL_OP}: input [${x.shape}] is not [m, ${a.cols}]`);
  return { x, codes, scales, shifts, format, rows: a.rows, cols: a.cols, m };
}

const kernels: tf.KernelConfig[] = [
  {
    kernelName: TERNARY_MATMUL_OP,
    backendName: 'cpu',
    kernelFunc: ({ inputs, attrs, backend }) => {
      const k = kernelInputs(inputs, attrs!);
      const be = backend as unknown as CpuBackend;
      const words = be.readSync(k.codes.dataId) as Int32Array;
      const y = ternaryMatMul(be.readSync(k.x.dataId) as Float32Array, k.m, {
        format: k.format,
        rows: k.rows,
        cols: k.cols,
        codes: new Uint8Array(words.buffer, words.byteOffset, words.byteLength),
        scales: be.readSync(k.scales.dataId) as Float32Array,
        shifts: k.shifts ? (be.readSync(k.shifts.dataId) as Float32Array) : undefined,
      });
      return be.makeTensorInfo([k.m, k.rows], 'float32', y);
    },
  },
  {
    kernelName: TERNARY_MATMUL_OP,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, attrs, backend }) => {
      const k = kernelInputs(inputs, attrs!);
      const program = ternaryMatMulProgram(k.format, k.rows, k.cols, k.m);
      const ins = k.shifts ? [k.x, k.codes, k.scales, k.shifts] : [k.x, k.codes, k.scales];
      return (backend as unknown as WebgpuBackend).runWebGPUProgram(program, ins, 'float32');
    },
  },
];

/** The dense W [rows, cols] of packed inputs, by the format's reference decoder (scales and
 *  shifts were fp16 in the shard, so converting back to fp16 is exact). */
export function dequantize(format: TernaryFormat, rows: number, cols: number, codes: Int32Array, scales: Float32Array, shifts?: Float32Array): Float32Array {
  return Float32Array.from(
    decodeTernary({
      format,
      rows,
      cols,
      codes: new Uint8Array(codes.buffer, codes.byteOffset, codes.byteLength),
      scales: Uint16Array.from(scales, floatToHalf),
      shifts: shifts ? Uint16Array.from(shifts, floatToHalf) : undefined,
    }),
  );
}

/** Dense weights decoded for backends without a kernel, per codes tensor (one per linear). */
const dequantized = new WeakMap<tf.Tensor, tf.Tensor2D>();

function executeTernaryMatMul(node: GraphNode): tf.Tensor {
  const [x, codes, scales, shifts] = node.inputs;
  const attrs: TernaryMatMulAttrs = { format: String(node.attrs.format), rows: Number(node.attrs.rows), cols: Number(node.attrs.cols) };
  const lead = x.shape.slice(0, -1);
  return tf.tidy(() => {
    const x2 = tf.reshape(x, [-1, attrs.cols]);
    let y: tf.Tensor;
    if ((PACKED_KERNEL_BACKENDS as readonly string[]).includes(tf.getBackend())) {
      const inputs: tf.NamedTensorMap = shifts ? { x: x2, codes, scales, shifts } : { x: x2, codes, scales };
      y = tf.engine().runKernel(TERNARY_MATMUL_OP, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
    } else {
      let w = dequantized.get(codes);
      if (!w) {
        const f = parseFormatId(attrs.format);
        const dense = dequantize(f, attrs.rows, attrs.cols, codes.dataSync() as Int32Array, scales.dataSync() as Float32Array, shifts?.dataSync() as Float32Array | undefined);
        w = tf.keep(tf.tensor2d(dense, [attrs.rows, attrs.cols]));
        dequantized.set(codes, w);
      }
      y = tf.matMul(x2, w, false, true);
    }
    return tf.reshape(y, [...lead, attrs.rows]);
  });
}

let registered = false;

/** Register the custom op and its kernels with tfjs (idempotent). */
export function registerTwlacOps(): void {
  if (registered) return;
  registered = true;
  for (const k of kernels) tf.registerKernel(k);
  registerOp(TERNARY_MATMUL_OP, executeTernaryMatMul);
}
