// Vitest global setup: compile src/ to dist/ first, so that the tests that run the `twlac` bin,
// the packed tarball or the examples (through the package's own `exports`) see the current source.
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
}
