// The checkpoint folder (src/util/checkpoint.ts): entries round-trip exactly, a torn write (a
// temporary file a kill left) is no entry, and a folder is refused when its key differs (naming
// the part), when it is found without resume, or when it is not a checkpoint. The CLI-level
// kill-and-resume test is test/cli/resume.test.ts.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Checkpoint, type CheckpointKey } from '../../src/util/checkpoint.ts';
import { UserError } from '../../src/errors.ts';

const tmp = mkdtempSync(join(tmpdir(), 'twlac-ckpt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const CODE = 'a1b2c3d4e5f6'.repeat(5) + 'a1b2';
const KEY: CheckpointKey = { twlac: '0.1.0', code: CODE, model: [{ path: '/m/model.onnx', size: 10, mtimeMs: 1 }], calibration: 'ab', options: { format: 'tq1_g128', acts: { kind: 'none' }, rotate: true } };

describe('Checkpoint', () => {
  it('creates its folder with the key on the first entry, round-trips entries bit for bit, and is removed', () => {
    const dir = join(tmp, 'a.twlac-resume');
    const ck = Checkpoint.open(dir, KEY, false);
    expect(existsSync(dir)).toBe(false);
    const v = { B: Float64Array.from([1 / 3, -0, NaN, 1e-310]), codes: Uint8Array.from([0, 255, 7]), stats: { e: 0.1 } };
    ck.save('site-0000', v);
    expect(readdirSync(dir).sort()).toEqual(['key.json', 'site-0000.bin']);
    const back = Checkpoint.open(dir, KEY, true).load<typeof v>('site-0000')!;
    expect(new Uint8Array(back.B.buffer, back.B.byteOffset, back.B.byteLength)).toEqual(new Uint8Array(v.B.buffer));
    expect(back.codes).toEqual(v.codes);
    expect(back.stats).toEqual(v.stats);
    ck.remove();
    expect(existsSync(dir)).toBe(false);
  });

  it('does not count an entry whose write a kill cut short', () => {
    const dir = join(tmp, 'b.twlac-resume');
    Checkpoint.open(dir, KEY, false).save('block-0000', [1]);
    writeFileSync(join(dir, `block-0001.bin.tmp-${process.pid + 1}`), new Uint8Array(3));
    const ck = Checkpoint.open(dir, KEY, true);
    expect(ck.has('block-0000')).toBe(true);
    expect(ck.has('block-0001')).toBe(false);
    expect(ck.load('block-0001')).toBeUndefined();
    writeFileSync(join(dir, 'block-0002.bin'), new Uint8Array([0xff, 0x0f, 0x00]));
    expect(() => ck.load('block-0002')).toThrow(/block-0002\.bin is unreadable .*remove the folder to start over/);
  });

  it('refuses another key naming what differs, a checkpoint found without resume, and a folder that is not one', () => {
    const dir = join(tmp, 'c.twlac-resume');
    Checkpoint.open(dir, KEY, false).save('site-0000', 1);
    const refusal = (key: CheckpointKey, resume = true) => {
      try {
        Checkpoint.open(dir, key, resume);
        return undefined;
      } catch (e) {
        expect(e).toBeInstanceOf(UserError);
        return (e as Error).message;
      }
    };
    // The same key with its options in another order is the same key.
    expect(refusal({ ...KEY, options: { rotate: true, acts: { kind: 'none' }, format: 'tq1_g128' } })).toBeUndefined();
    expect(refusal(KEY, false)).toMatch(/holds the checkpoint of an interrupted compile: pass --resume to continue it/);
    expect(refusal({ ...KEY, twlac: '0.2.0' })).toMatch(/\(made by twlac 0\.1\.0, this is 0\.2\.0\)/);
    // The same version from other code (another commit): refused, naming both builds.
    expect(refusal({ ...KEY, code: 'f'.repeat(64) })).toBe(
      `checkpoint ${dir} is from another compile (made by another build of twlac 0.1.0: code a1b2c3d4e5f6, this is ffffffffffff): resume with the inputs and flags it was made with, or remove it to start over`,
    );
    expect(refusal({ ...KEY, model: [{ ...KEY.model[0], mtimeMs: 2 }] })).toMatch(/\(the source model differs/);
    // A checkpoint from before the code digest was recorded is another build too.
    const old = join(tmp, 'old.twlac-resume');
    mkdirSync(old);
    const { code: _code, ...keyWithoutCode } = KEY;
    writeFileSync(join(old, 'key.json'), JSON.stringify(keyWithoutCode));
    expect(() => Checkpoint.open(old, KEY, true)).toThrow(/\(made by another build of twlac 0\.1\.0: code not recorded, this is a1b2c3d4e5f6\)/);
    expect(refusal({ ...KEY, calibration: 'cd' })).toMatch(/\(the calibration data differs/);
    expect(refusal({ ...KEY, options: { ...KEY.options, rotate: false, gptq: false } })).toMatch(/\(options differ: gptq, rotate\)/);
    const foreign = join(tmp, 'd.twlac-resume');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'notes.txt'), 'mine');
    expect(() => Checkpoint.open(foreign, KEY, true)).toThrow(/is not a twlac checkpoint/);
    expect(() => Checkpoint.open(foreign, KEY, false)).toThrow(/is not a twlac checkpoint/);
    expect(readdirSync(foreign)).toEqual(['notes.txt']);
  });
});
