// The shape of a recognised decoder-only transformer: what `recognize` reads off an ONNX
// graph, and what the artifact manifest and every runtime plan against.
export interface ModelConfig {
  arch: 'llama';
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  ropeTheta: number;
  normEps: number;
  /** Longest context the runtimes should plan for. */
  maxPositions: number;
}
