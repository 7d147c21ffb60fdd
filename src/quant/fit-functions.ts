// What the fit pool's workers run (fit-pool.ts), in one module: the worker imports it by URL
// from beside the pool (src/ under tsx, dist/, or the device bundle's fit-functions.mjs).
export { quantizeLinear } from './quantize-linear.ts';
export { optimiseKotms } from './kotms.ts';
export { prepareKernelHessian } from './structure-kernel.ts';
