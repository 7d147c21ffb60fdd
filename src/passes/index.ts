// twlac/passes: the compile pipeline as parts, for ONNX toolchains that run some of twlac's
// passes, or their own passes between them (docs/api.md). Every pass reads and writes one
// shared CompileContext, made by `createContext`; a PassManager runs a list of them in order
// and names the failing pass in its errors.
export { PassManager, PassError, definePass, silentProgress, type Pass, type PassContext, type PassResult, type PassTiming, type Progress } from '../graph/pass.ts';
export { createContext, pipeline, DEFAULT_OPTIONS } from '../compile.ts';
export type { ActSpec, CompileContext, CompileOptions, LinearState, SiteState, Structure, WeightsMethod } from './context.ts';
export type { KotmsOptions } from '../quant/kotms.ts';
export { checkWeightsPass } from './check-weights.ts';
export { foldNormsPass } from './fold-norms.ts';
export { rotatePass } from './rotate.ts';
export { ternaryPass } from './ternary.ts';
export { actPrecisionPass } from './act-precision.ts';
export { lowerOrtPass } from './lower-ort.ts';
export { weightRows, type Linear } from '../graph/recognize.ts';
