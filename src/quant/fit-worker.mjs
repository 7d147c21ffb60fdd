// Worker of the fit pool (fit-pool.ts): fits linears with quantizeLinear as the main thread
// sends them. Plain JavaScript so that it starts the same way from src/ and from dist/; from
// src/ (a .ts module, as under tsx or vitest) it registers tsx's loader first.
import { parentPort, workerData } from 'node:worker_threads';

if (workerData.module.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
const { quantizeLinear } = await import(workerData.module);

parentPort.on('message', ({ id, w, rows, cols, h, opts }) => {
  try {
    const r = quantizeLinear(w, rows, cols, h, opts);
    const transfer = [r.dequant.buffer];
    if (r.weights) for (const a of [r.weights.codes, r.weights.scales, r.weights.shifts]) if (a) transfer.push(a.buffer);
    parentPort.postMessage({ id, result: r }, transfer);
  } catch (e) {
    parentPort.postMessage({ id, error: { name: e?.name ?? 'Error', message: e?.message ?? String(e) } });
  }
});
parentPort.postMessage({ ready: true });
