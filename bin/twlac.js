#!/usr/bin/env node
// Thin launcher for the compiled CLI (dist/, built by `npm run build`).
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv);
