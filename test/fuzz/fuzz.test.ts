// The quick form of the fuzz and fault suite (the long form is `npm run fuzz`): about 200
// seeded cases over every category, most run in this process through the CLI's `main`, a
// representative set through bin/twlac.js (special files, the working folder, signals,
// memory). Every case must end as test/fuzz/harness.ts describes; the counts by category
// show that each category both ran and reached the code it aims at.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildCorpus } from './corpus.ts';
import { CATEGORIES, QUICK, makeCases } from './cases.ts';
import { runCase, summarise, type Outcome } from './harness.ts';

const root = mkdtempSync(join(tmpdir(), 'twlac-fuzz-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('fuzz and fault suite (quick form, seed 1)', () => {
  it('the harness itself flags misbehaviour (a refusal-only case that compiles, a line that names the wrong thing)', async () => {
    const corpus = buildCorpus(join(root, 'corpus-self'));
    const control = makeCases(corpus, 1, QUICK).find((c) => c.id.startsWith('cli/control-ok'))!;
    const mustRefuse = await runCase({ ...control, id: 'self/accepts', expect: 'refuse' }, join(root, 'self'));
    expect(mustRefuse.failures).toContain('accepted an input it must refuse');
    const dot = makeCases(corpus, 1, QUICK).find((c) => c.id.startsWith('cli/out-no-parent'))!;
    const wrongWords = await runCase({ ...dot, id: 'self/words', mentions: /no such words/ }, join(root, 'self'));
    expect(wrongWords.verdict).toBe('refused');
    expect(wrongWords.failures.join()).toMatch(/does not match/);
  });

  it('every damaged input ends in one clean line or a working output, with nothing left behind', async () => {
    const corpus = buildCorpus(join(root, 'corpus'));
    const cases = makeCases(corpus, 1, QUICK);
    const outcomes: Outcome[] = [];
    for (const c of cases) outcomes.push(await runCase(c, join(root, 'cases')));
    const bad = outcomes.filter((o) => o.failures.length).map((o) => `${o.id} (exit ${o.code}): ${o.failures.join('; ')} | ${o.stderr.split('\n')[0]}`);
    expect(bad).toEqual([]);
    const s = summarise(outcomes);
    expect(s.cases).toBeGreaterThanOrEqual(200);
    // Every category ran, and each has refusals (the damage was seen) ...
    for (const cat of CATEGORIES) expect(s.byCategory[cat]?.refused, cat).toBeGreaterThan(0);
    // ... and the controls and tolerable damage compiled (the oracle for accepted outputs ran).
    expect(s.byCategory.cli.accepted).toBeGreaterThan(0);
    expect(s.byCategory.protobuf.accepted).toBeGreaterThan(0);
    expect(s.byExit['70'] ?? 0).toBe(0);
    expect(s.viaCli).toBeGreaterThanOrEqual(10);
  }, 600_000);
});
