// Typed WGSL fragments and the one helper that turns a kernel description into a module.
// Generated text is assembled only from `Code` fragments, checked identifiers and typed
// literals (u32/i32/f32), so a stray JS string or an unformatted float cannot reach the
// emitted shader. Bindings, the step uniform and the entry point are declared here, never
// by hand in a kernel.

import { code, Code, type Frag, ident } from '../common/fragments.ts';

export { Code, ident, type Frag };

/** The WGSL tag: the shared typed-fragment template (integers emitted as abstract-int literals). */
export const wgsl: (strings: TemplateStringsArray, ...parts: Frag[]) => Code = code;

export function u32(n: number): Code {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`WGSL: ${n} is not a u32`);
  return new Code(`${n}u`);
}

export function f32(x: number): Code {
  if (!Number.isFinite(x)) throw new Error(`WGSL: ${x} is not a finite f32`);
  const s = x.toExponential(9);
  return new Code(`f32(${s})`);
}

export function join(parts: readonly Code[], sep = '\n'): Code {
  return new Code(parts.map((p) => p.text).join(sep));
}

/** A storage buffer a kernel reads or writes; element type is the array's. */
export interface Binding {
  name: string;
  elem: 'f32' | 'u32' | 'vec4<f32>' | 'vec4<u32>';
  access: 'read' | 'read_write';
}

/** Values that change per forward call, shared by every kernel of that call: position of
 *  the first token, tokens in the call, first input row (rmsNorm of the last token only). */
const STEP_UNIFORM = { name: 'step', fields: ['pos0', 'ntok', 'row0'] } as const;

/** Optional adapter features a kernel was generated for (part of the cache key). */
export interface WgslFeatures {
  subgroups: boolean;
}

export const NO_FEATURES: WgslFeatures = { subgroups: false };

/** A kernel is data: the runtime and `emitWgsl` consume exactly this. */
export interface WgslKernel {
  name: string;
  /** Identifies the generated source: same key, same text. */
  cacheKey: string;
  /** Storage buffers at @binding(0..n-1); the step uniform, if used, follows them. */
  bindings: readonly Binding[];
  usesStep: boolean;
  workgroupSize: number;
  /** Workgroup counts for a forward of `ntok` tokens from position `pos0` (default 0; kernels
   *  whose work grows with the context, the split attention, dispatch only what it reaches). */
  dispatch(ntok: number, pos0?: number): [number, number, number];
  source(): string;
}

export interface KernelSpec {
  name: string;
  /** Everything the source depends on besides the name, e.g. shapes and format. */
  params: Record<string, string | number | boolean>;
  bindings: readonly Binding[];
  usesStep: boolean;
  workgroupSize: number;
  features?: WgslFeatures;
  /** Module-scope declarations (helper functions, workgroup arrays, constants). */
  module?: Code;
  /** Body of `main`; in scope: wid (workgroup_id), lid (local_invocation_index), and with
   *  subgroups, sg_lane / sg_size. */
  body: Code;
  dispatch(ntok: number, pos0?: number): [number, number, number];
}

export function defineKernel(spec: KernelSpec): WgslKernel {
  const feats = spec.features ?? NO_FEATURES;
  const names = new Set<string>();
  for (const b of spec.bindings) {
    ident(b.name);
    if (names.has(b.name)) throw new Error(`${spec.name}: duplicate binding ${b.name}`);
    names.add(b.name);
  }
  if (!Number.isInteger(spec.workgroupSize) || spec.workgroupSize < 1 || spec.workgroupSize > 256) {
    throw new Error(`${spec.name}: workgroup size ${spec.workgroupSize} out of range`);
  }
  const key = Object.entries({ ...spec.params, sg: feats.subgroups })
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return {
    name: spec.name,
    cacheKey: `${spec.name}(${key})`,
    bindings: spec.bindings,
    usesStep: spec.usesStep,
    workgroupSize: spec.workgroupSize,
    dispatch: spec.dispatch,
    source: () => moduleSource(spec, feats, key),
  };
}

function moduleSource(spec: KernelSpec, feats: WgslFeatures, key: string): string {
  const decls = spec.bindings.map(
    (b, i) => wgsl`@group(0) @binding(${i}) var<storage, ${new Code(b.access)}> ${ident(b.name)}: array<${new Code(b.elem)}>;`,
  );
  const step = spec.usesStep
    ? [
        wgsl`struct Step { ${join(STEP_UNIFORM.fields.map((f) => wgsl`${ident(f)}: u32,`), ' ')} }`,
        wgsl`@group(0) @binding(${spec.bindings.length}) var<uniform> ${ident(STEP_UNIFORM.name)}: Step;`,
      ]
    : [];
  const sgArgs = feats.subgroups ? wgsl`, @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32` : wgsl``;
  const parts: Code[] = [
    wgsl`// twlac ${ident(spec.name)}: ${new Code(key.replace(/[\r\n]/g, ' '))}`,
    ...(feats.subgroups ? [wgsl`enable subgroups;`] : []),
    ...step,
    ...decls,
    spec.module ?? wgsl``,
    wgsl`@compute @workgroup_size(${spec.workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32${sgArgs}) {
${spec.body}
}`,
  ];
  return join(parts).text + '\n';
}

/** The host side of `bindings`: bind group layout entries in binding order, the step
 *  uniform last. Runtimes build explicit layouts from this ('auto' would drop bindings
 *  that a shader happens not to read). */
export function layoutEntries(k: WgslKernel): GPUBindGroupLayoutEntry[] {
  const types: GPUBufferBindingType[] = k.bindings.map((b) => (b.access === 'read' ? 'read-only-storage' : 'storage'));
  if (k.usesStep) types.push('uniform');
  return types.map((type, binding) => ({ binding, visibility: 4 /* GPUShaderStage.COMPUTE */, buffer: { type } }));
}
