// withAtomicDir's promise: it never deletes what twlac did not write, and a failed job leaves
// nothing behind. The command-line cases (onto inputs, the working folder, special places,
// signals) are in test/fuzz; these are the ones only the library API can stage.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { withAtomicDir } from '../../src/util/atomic-dir.ts';
import { printable, UserError } from '../../src/errors.ts';

const tmp = mkdtempSync(join(tmpdir(), 'twlac-atomic-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function earlierOutput(dir: string): void {
  mkdirSync(dir);
  writeFileSync(join(dir, 'weights.bin'), 'old');
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ kind: 'twlac-artifact', files: { 'weights.bin': 3 } }));
}

describe('withAtomicDir', () => {
  it('replaces an earlier twlac output with --force, and not without', async () => {
    const out = join(tmp, 'a');
    earlierOutput(out);
    await expect(withAtomicDir(out, async () => 1)).rejects.toThrow(/pass --force/);
    await withAtomicDir(out, async (d) => writeFileSync(join(d, 'weights.bin'), 'new'), { force: true });
    expect(readFileSync(join(out, 'weights.bin'), 'utf8')).toBe('new');
    expect(readdirSync(tmp).filter((n) => n.includes('twlac-'))).toEqual([]);
  });

  it('keeps a file that appeared in the output folder while the job ran, and the earlier output with it', async () => {
    const out = join(tmp, 'b');
    earlierOutput(out);
    const job = withAtomicDir(
      out,
      async (d) => {
        writeFileSync(join(d, 'weights.bin'), 'new');
        writeFileSync(join(out, 'notes.txt'), 'written by the user meanwhile');
      },
      { force: true },
    );
    await expect(job).rejects.toThrow(UserError);
    await expect(job).rejects.toThrow(/notes\.txt, which twlac did not write/);
    expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('written by the user meanwhile');
    expect(readFileSync(join(out, 'weights.bin'), 'utf8')).toBe('old');
    expect(readdirSync(tmp).filter((n) => n.includes('twlac-'))).toEqual([]);
  });

  it('a failing job leaves no folder and no temporary sibling', async () => {
    const out = join(tmp, 'c');
    await expect(
      withAtomicDir(out, async (d) => {
        writeFileSync(join(d, 'half.bin'), 'x');
        throw new UserError('stop');
      }),
    ).rejects.toThrow('stop');
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(tmp).filter((n) => n.includes('twlac-'))).toEqual([]);
  });
});

describe('printable', () => {
  it('escapes what a terminal would act on and keeps the rest', () => {
    expect(printable('a\u001b[2Jb\nc\rd\u0000e\u007f\u202ef\u0085 ü → ok')).toBe('a\\x1b[2Jb\\x0ac\\x0dd\\x00e\\x7f\\u{202e}f\\x85 ü → ok');
  });
});
