// A linear's storage as the manifest states it (LinearEntry.format: a dense dtype or a ternary
// format id), parsed once into a typed value that the backends switch on instead of
// comparing or re-parsing strings.
import { UserError } from '../errors.ts';
import { parseFormatId, type TernaryFormat } from './ternary.ts';

export type DenseDtype = 'float16' | 'float32';

export type LinearFormat = { kind: 'dense'; dtype: DenseDtype } | { kind: 'ternary'; format: TernaryFormat };

/** Each distinct format string, parsed (the parse happens once per string). */
const parsed = new Map<string, LinearFormat>();

/** The typed format of a linear; an unknown format is the user's error, naming the linear. */
export function linearFormat(l: { name: string; format: string }): LinearFormat {
  let f = parsed.get(l.format);
  if (!f) {
    if (l.format === 'float16' || l.format === 'float32') f = { kind: 'dense', dtype: l.format };
    else {
      try {
        f = { kind: 'ternary', format: parseFormatId(l.format) };
      } catch (e) {
        throw new UserError(`${l.name}: ${(e as Error).message}`);
      }
    }
    parsed.set(l.format, f);
  }
  return f;
}

/** The ternary format of a linear; undefined for a dense one. */
export function ternaryFormatOf(l: { name: string; format: string }): TernaryFormat | undefined {
  const f = linearFormat(l);
  return f.kind === 'ternary' ? f.format : undefined;
}
