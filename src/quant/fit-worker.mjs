// Worker of the fit pool (fit-pool.ts): runs the pool's functions (a linear's ternary fit, a
// site's KOTMS) as the main thread sends them. Plain JavaScript so that it starts the same
// way from src/ and from dist/; from src/ (.ts modules, as under tsx or vitest) it registers
// tsx's loader first.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';

// A fit allocates its scratch (rows·cols and cols² float64 arrays) outside the heap, which V8
// collects lazily: each worker would hold several fits' dead scratch. Collect after each job.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc');

const modules = Object.entries(workerData.modules);
if (modules.some(([, url]) => url.endsWith('.ts'))) {
  const { register } = await import('tsx/esm/api');
  register();
}
const fns = {};
for (const [name, url] of modules) fns[name] = (await import(url))[name];

/** The result's typed arrays (to one level of nesting) that are not shared: moved, not copied. */
function transferables(r) {
  const out = new Set();
  const visit = (v, depth) => {
    if (ArrayBuffer.isView(v)) {
      if (v.buffer instanceof ArrayBuffer) out.add(v.buffer);
    } else if (v && typeof v === 'object' && depth < 2) for (const x of Object.values(v)) visit(x, depth + 1);
  };
  visit(r, 0);
  return [...out];
}

parentPort.on('message', ({ id, fn, args }) => {
  try {
    const result = fns[fn](...args);
    parentPort.postMessage({ id, result }, transferables(result));
  } catch (e) {
    parentPort.postMessage({ id, error: { name: e?.name ?? 'Error', message: e?.message ?? String(e) } });
  }
  collect();
});
parentPort.postMessage({ ready: true });
