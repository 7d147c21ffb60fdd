// Feeds for a decoder-only LM session from token ids alone: input_ids, and for KV-cache
// exports an all-ones attention_mask, positions 0..seq-1 and empty past_key_values.
// Used for sessions whose outputs are not logits (calibration models).
import * as ort from 'onnxruntime-node';

export function buildFeeds(session: ort.InferenceSession, ids: Int32Array, batch: number, seq: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  const ints = (type: string, vals: ArrayLike<number>, dims: number[]) =>
    type === 'int32' ? new ort.Tensor('int32', Int32Array.from(vals), dims) : new ort.Tensor('int64', BigInt64Array.from(Array.from(vals), (v) => BigInt(v)), dims);
  for (const m of session.inputMetadata) {
    if (!m.isTensor) throw new Error(`input ${m.name} is not a tensor`);
    if (m.name === 'input_ids') feeds[m.name] = ints(m.type, ids, [batch, seq]);
    else if (m.name === 'attention_mask') feeds[m.name] = ints(m.type, new Array(batch * seq).fill(1), [batch, seq]);
    else if (m.name === 'position_ids') feeds[m.name] = ints(m.type, Array.from({ length: batch * seq }, (_, i) => i % seq), [batch, seq]);
    else if (/^past/.test(m.name)) {
      const dims = [batch, Number(m.shape[1]), 0, Number(m.shape[3])];
      feeds[m.name] = m.type === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), dims) : new ort.Tensor('float32', new Float32Array(0), dims);
    }
  }
  return feeds;
}
