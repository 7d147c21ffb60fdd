// Entry of the bundled CLI that travels to the GPU machine (scripts/device/compile-7b.sh):
// the same `main` as bin/twlac.js, without tsx.
import { main } from '../../src/cli/main.ts';

process.exitCode = await main(process.argv);
