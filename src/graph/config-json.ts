// config.json beside a model (Hugging Face's model configuration). Recognition reads a few
// numbers from it where the graph does not state them, and they reach the manifest and the
// runtimes, so the file is read like any other input a model brings: a regular file inside
// the model's folder, of bounded size, and every field twlac reads checked for type and
// range. A config.json that is there but wrong is refused, not ignored.
import { existsSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { MiB, readTextFile, resolvesInside } from '../util/files.ts';

export const CONFIG_FILE = 'config.json';

/** Fields twlac reads, with their allowed range (inclusive) and whether they are integers. */
const FIELDS: Record<string, { min: number; max: number; integer: boolean }> = {
  num_attention_heads: { min: 1, max: 1 << 16, integer: true },
  num_key_value_heads: { min: 1, max: 1 << 16, integer: true },
  head_dim: { min: 1, max: 1 << 16, integer: true },
  hidden_size: { min: 1, max: 1 << 20, integer: true },
  vocab_size: { min: 1, max: 1 << 24, integer: true },
  max_position_embeddings: { min: 1, max: 1 << 24, integer: true },
  rope_theta: { min: Number.MIN_VALUE, max: 1e12, integer: false },
  'rope_parameters.rope_theta': { min: Number.MIN_VALUE, max: 1e12, integer: false },
  rms_norm_eps: { min: 0, max: 1, integer: false },
};

function field(o: Record<string, unknown>, path: string): unknown {
  let cur: unknown = o;
  for (const part of path.split('.')) cur = cur && typeof cur === 'object' && !Array.isArray(cur) ? (cur as Record<string, unknown>)[part] : undefined;
  return cur;
}

/** The parsed and checked config.json in `dir`, or undefined when there is none. */
export function readConfigJson(dir: string): Record<string, unknown> | undefined {
  const path = join(dir, CONFIG_FILE);
  let present: boolean;
  try {
    present = existsSync(path) || lstatSync(path).isSymbolicLink();
  } catch {
    present = false;
  }
  if (!present) return undefined;
  if (!resolvesInside(path, dir)) throw new UserError(`${path} resolves outside the model's folder`);
  const text = readTextFile(path, CONFIG_FILE, 16 * MiB);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UserError(`${path} is not a JSON object`);
  const cfg = json as Record<string, unknown>;
  for (const [name, r] of Object.entries(FIELDS)) {
    const v = field(cfg, name);
    if (v === undefined || v === null) continue;
    const ok = typeof v === 'number' && Number.isFinite(v) && v >= r.min && v <= r.max && (!r.integer || Number.isInteger(v));
    if (!ok) {
      const want = r.integer ? `an integer from ${r.min} to ${r.max}` : `a number in (${r.min === Number.MIN_VALUE ? 0 : r.min}, ${r.max}]`;
      throw new UserError(`${path}: ${name} is ${JSON.stringify(v) ?? String(v)}; expected ${want}`);
    }
  }
  return cfg;
}
