// Typed code fragments shared by the code generators (CUDA; WGSL may use it too).
// Generated text is assembled only from `Code` fragments, checked identifiers and
// non-negative integers through the `code` tag, so that a stray JS string, `undefined` or an
// unformatted float cannot reach emitted source. Target-specific literals (a CUDA float, a
// WGSL u32) are small helpers in each backend that return `Code`.

export class Code {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** A fragment slot accepts code or a non-negative integer (emitted in decimal). */
export type Frag = Code | number;

function fragText(p: Frag): string {
  if (p instanceof Code) return p.text;
  if (typeof p !== 'number' || !Number.isSafeInteger(p) || p < 0) {
    throw new Error(`code fragment: ${String(p)} is not a non-negative integer; wrap floats with f32() (WGSL) or the backend's typed float literal`);
  }
  return String(p);
}

/** Tagged template: `code\`int ${ident('n')} = ${4};\`` */
export function code(strings: TemplateStringsArray, ...parts: Frag[]): Code {
  let s = strings[0];
  parts.forEach((p, i) => (s += fragText(p) + strings[i + 1]));
  return new Code(s);
}

export function ident(name: string): Code {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`'${name}' is not an identifier`);
  return new Code(name);
}

export function join(parts: readonly Code[], sep = '\n'): Code {
  return new Code(parts.map((p) => p.text).join(sep));
}

/** A comment line; newlines in the text are flattened so it cannot escape the comment. */
export function comment(text: string): Code {
  return new Code(`// ${text.replace(/[\r\n]+/g, ' ')}`);
}

/** Stable cache key of a kernel: its name and every parameter its source depends on. */
export function cacheKey(name: string, params: Record<string, string | number | boolean>): string {
  return `${name}(${Object.entries(params)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')})`;
}
