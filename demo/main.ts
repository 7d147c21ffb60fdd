// The demo page: loads an artifact (manifest.json, weights.bin, tokenizer.json) over fetch,
// runs greedy decoding with the WebGPU runtime on navigator.gpu, and shows the text and
// tokens/s. Query: ?model=<artifact url> (default ./model/), &prompt=, &tokens=, &auto=1
// (generate on load). When done it sets body[data-state=done] and window.twlacResult.
import { Tokenizer } from '@huggingface/tokenizers';
import type { ArtifactManifest } from '../src/artifact/manifest.ts';
import { requestModelDevice } from '../src/runtime/webgpu/device.ts';
import { WebgpuModel } from '../src/runtime/webgpu/runtime.ts';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const q = new URLSearchParams(location.search);
const base = new URL(q.get('model') ?? './model/', location.href);

function setStatus(s: string) {
  $('status').textContent = s;
}

async function load(): Promise<{ model: WebgpuModel; tok: Tokenizer; adapter: string }> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing)');
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter');
  const device = await requestModelDevice(adapter);
  const get = async (name: string) => {
    const r = await fetch(new URL(name, base));
    if (!r.ok) throw new Error(`${name}: HTTP ${r.status}`);
    return r;
  };
  const manifest = (await (await get('manifest.json')).json()) as ArtifactManifest;
  const weights = new Uint8Array(await (await get(manifest.weightsFile)).arrayBuffer());
  const tok = new Tokenizer(await (await get('tokenizer.json')).json(), {});
  const model = await WebgpuModel.create(device, { manifest, weights }, { capacity: 32 });
  const name = adapter.info ? `${adapter.info.vendor} ${adapter.info.architecture} ${adapter.info.description}`.trim() : 'adapter';
  return { model, tok, adapter: name };
}

async function generate(model: WebgpuModel, tok: Tokenizer) {
  const prompt = $<HTMLTextAreaElement>('prompt').value;
  const n = Math.max(1, Math.min(256, Number($<HTMLInputElement>('tokens').value) || 32));
  const ids = tok.encode(prompt, { add_special_tokens: false }).ids;
  const out = $('output');
  out.textContent = prompt;
  const gen = document.createElement('span');
  gen.className = 'gen';
  out.append(gen);
  document.body.dataset.state = 'running';
  const t0 = performance.now();
  let tFirst = 0;
  const got: number[] = [];
  await model.greedy(ids, n, (id) => {
    if (!got.length) tFirst = performance.now();
    got.push(id);
    gen.textContent = tok.decode(got);
  });
  const t1 = performance.now();
  const decodeRate = got.length > 1 ? ((got.length - 1) * 1000) / (t1 - tFirst) : 0;
  $('stats').textContent = `${got.length} tokens in ${((t1 - t0) / 1000).toFixed(2)} s · prefill ${ids.length} tokens ${((tFirst - t0) / 1000).toFixed(2)} s · decode ${decodeRate.toFixed(2)} tokens/s`;
  (window as unknown as { twlacResult: unknown }).twlacResult = { promptIds: ids, ids: got, text: gen.textContent, tokensPerSecond: decodeRate };
  document.body.dataset.state = 'done';
}

async function main() {
  try {
    const { model, tok, adapter } = await load();
    const m = model.manifest;
    setStatus(`${m.source.path.split('/').pop()} · ${m.config.layers} layers · ${m.bitsPerWeight.toFixed(2)} bits/weight · ${adapter}`);
    if (q.get('prompt') !== null) $<HTMLTextAreaElement>('prompt').value = q.get('prompt')!;
    if (q.get('tokens') !== null) $<HTMLInputElement>('tokens').value = q.get('tokens')!;
    const btn = $<HTMLButtonElement>('go');
    btn.disabled = false;
    btn.onclick = () => {
      btn.disabled = true;
      generate(model, tok).finally(() => (btn.disabled = false));
    };
    if (q.get('auto') === '1') await generate(model, tok);
  } catch (e) {
    setStatus(`Error: ${(e as Error).message}`);
    document.body.dataset.state = 'error';
    (window as unknown as { twlacError: string }).twlacError = String((e as Error).stack ?? e);
  }
}

void main();
