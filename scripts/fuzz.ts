// `npm run fuzz`: the long form of the fuzz and fault suite (test/fuzz/). Runs the seeded
// cases, prints counts by category and exit code, lists every misbehaving case, and writes
// bench/results/fuzz.json (date, commit, command, counts). Exits 1 when any case misbehaved.
//
//   npm run fuzz                         # 5,000+ cases, seed 1
//   npm run fuzz -- --seed 7 --quick     # the ~200 cases npm test runs
//   npm run fuzz -- --only semantic/cycle --keep   # a subset; keep failing cases' files
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCorpus } from '../test/fuzz/corpus.ts';
import { LONG, QUICK, makeCases } from '../test/fuzz/cases.ts';
import { runCase, summarise, type Outcome } from '../test/fuzz/harness.ts';

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const value = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const seed = Number(value('--seed') ?? 1);
const quick = flag('--quick');
const only = value('--only');
const keep = flag('--keep');
const write = !quick && !only && !flag('--no-write');

const root = mkdtempSync(join(tmpdir(), 'twlac-fuzz-'));
const corpus = buildCorpus(join(root, 'corpus'));
const cases = makeCases(corpus, seed, quick ? QUICK : LONG).filter((c) => !only || c.id.startsWith(only));
const t0 = performance.now();
const outcomes: Outcome[] = [];
for (const [i, c] of cases.entries()) {
  const o = await runCase(c, join(root, 'cases'));
  outcomes.push(o);
  if (o.failures.length) process.stdout.write(`FAIL ${o.id} (exit ${o.code}): ${o.failures.join('; ')}\n     ${o.stderr.split('\n')[0]}\n`);
  if ((i + 1) % 250 === 0) process.stderr.write(`${i + 1}/${cases.length} cases, ${outcomes.filter((x) => x.failures.length).length} failing, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
}
const seconds = (performance.now() - t0) / 1000;
const summary = summarise(outcomes);
process.stdout.write(`${JSON.stringify(summary, null, 1)}\n${summary.cases} cases in ${seconds.toFixed(0)} s, ${summary.failures} misbehaving\n`);

if (write) {
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() !== '';
  const result = {
    date: new Date().toISOString().slice(0, 10),
    commit: dirty ? `${commit} (with uncommitted changes)` : commit,
    command: `npm run fuzz -- --seed ${seed}`,
    seed,
    seconds: Math.round(seconds),
    ...summary,
    misbehaving: outcomes.filter((o) => o.failures.length).map((o) => ({ id: o.id, code: o.code, failures: o.failures })),
  };
  writeFileSync(new URL('../bench/results/fuzz.json', import.meta.url), `${JSON.stringify(result, null, 1)}\n`);
}
if (!keep || summary.failures === 0) rmSync(root, { recursive: true, force: true });
else process.stdout.write(`failing cases kept under ${root}/cases\n`);
process.exitCode = summary.failures ? 1 : 0;
