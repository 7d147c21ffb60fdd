// twlac's library API: the same pipeline the CLI runs, over in-memory ONNX models.
export { loadModel, saveModel, decodeModel, encodeModel } from './graph/onnx.ts';
export { Model, Graph, Node, Value } from './graph/ir.ts';
export { Tensor } from './graph/tensor.ts';
export { GraphBuilder } from './graph/builder.ts';
export { PassManager, definePass, type Pass, type PassResult } from './graph/pass.ts';
export { recognize, type TransformerStructure } from './graph/recognize.ts';
export { compile, compileToDir, createContext, pipeline, DEFAULT_OPTIONS, type CompileOptions, type CompileResult, type CompileFileResult } from './compile.ts';
export { emitTargets, parseTargets, type TargetSpec } from './codegen/targets.ts';
export { checkWeightsPass } from './passes/check-weights.ts';
export { foldNormsPass } from './passes/fold-norms.ts';
export { rotatePass } from './passes/rotate.ts';
export { ternaryPass } from './passes/ternary.ts';
export { refinePass, DEFAULT_REFINE } from './passes/refine.ts';
export { actPrecisionPass } from './passes/act-precision.ts';
export { lowerOrtPass } from './passes/lower-ort.ts';
export { storagePrecisionPass } from './passes/storage-precision.ts';
export { splitPackedLinears } from './passes/split-packed.ts';
export { evaluatePerplexity, evaluatePerplexity as evaluate } from './eval/perplexity.ts';
export { generate } from './eval/generate.ts';
export { loadTokenizer, tokenizeText } from './eval/tokenizer.ts';
export { calibrationSegments, calibrationSegmentsFromText } from './calib/data.ts';
export { CODE_PACKINGS, ternaryFormat, parseFormatId, encodeTernary, decodeTernary, bitsPerWeight } from './formats/ternary.ts';
export type { ArtifactManifest } from './artifact/manifest.ts';
export {
  BLOCK_OPS,
  FEATURES,
  FEATURE_TEXT,
  blockOps,
  programFeatures,
  refuseMissing,
  type BlockOp,
  type BlockProgram,
  type Feature,
  type FeatureTable,
  type ModelProgram,
} from './program/block-program.ts';
export { linearFormat, type LinearFormat } from './formats/linear-format.ts';
export { UserError } from './errors.ts';
// Option and result types of the functions above, for callers' own signatures.
export type { SaveOptions } from './graph/onnx.ts';
export type { RecognizeOptions } from './graph/recognize.ts';
export type { ModelConfig } from './graph/model-config.ts';
export type { PerplexityOptions } from './eval/perplexity.ts';
export type { GenerateOptions } from './eval/generate.ts';
export type { OrtModel } from './eval/ort-session.ts';
export type { TextTokenizer, TokenizeOptions } from './eval/tokenizer.ts';
export type { CalibrationOptions } from './calib/data.ts';
export type { CodePacking } from './formats/ternary.ts';
export { emitKernelPack, parseShapes, type KernelPackSpec, type KernelPackManifest } from './codegen/kernel-pack.ts';
