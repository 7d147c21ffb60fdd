# Baseline for the CUDA runtime's decode benchmark: PyTorch fp16 decode of a LLaMA-2-7B-shaped
# model (random weights) at a given context and batch, with a static KV cache and CUDA graphs
# (torch.compile mode="reduce-overhead"); falls back to eager if compilation fails. Also times
# the CTX-token prefill of the batch (eager fp16, cuBLAS GEMMs and SDPA attention; it computes
# the logits of every token, about 2% of its work): median of 3 after a warm-up.
# Usage:
#   python3 torch_decode.py CTX STEPS OUT.json                  one context, batch 1
#   python3 torch_decode.py --configs 512x1,512x4,2048x1 STEPS DIR
#       each CONTEXTxBATCH in one process (the model is built once), DIR/torch-decode-<ctx>[-b<batch>].json
#       (batch 1 keeps the plain name that scripts/device/decode-roofline.ts reads)
import json, os, sys, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import StaticCache

cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)
torch.manual_seed(0)
with torch.device('cuda'):
    model = LlamaForCausalLM(cfg).to(torch.float16).eval()


def run(ctx, batch, steps):
    cache = StaticCache(config=cfg, max_batch_size=batch, max_cache_len=ctx + steps + 8, device='cuda', dtype=torch.float16)
    ids = torch.randint(0, 32000, (batch, ctx), device='cuda')
    res = {'torch': torch.__version__, 'device': torch.cuda.get_device_name(), 'context': ctx, 'batch': batch, 'steps': steps}

    def step(tok, pos):
        out = model(input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True)
        return out.logits[:, -1].argmax(-1, keepdim=True)

    with torch.no_grad():
        # prefill timing on fresh caches of its own (the decode below keeps `cache`)
        try:
            times = []
            for i in range(4):
                c = StaticCache(config=cfg, max_batch_size=batch, max_cache_len=ctx + 8, device='cuda', dtype=torch.float16)
                torch.cuda.synchronize(); t0 = time.time()
                model(input_ids=ids, past_key_values=c, cache_position=torch.arange(ctx, device='cuda'), use_cache=True)
                torch.cuda.synchronize()
                if i: times.append(time.time() - t0)  # the first is a warm-up
                del c
            res['prefillSeconds'] = sorted(times)[1]
        except Exception as e:
            res['prefillError'] = str(e)[:300]
        nxt = step(ids, torch.arange(ctx, device='cuda'))
        torch.cuda.synchronize()
        mode = 'compile-reduce-overhead'
        try:
            fstep = torch.compile(step, mode='reduce-overhead', fullgraph=False)
            t0 = time.time()
            for i in range(3):
                torch.compiler.cudagraph_mark_step_begin()
                nxt = fstep(nxt, torch.tensor([ctx + i], device='cuda')).clone()
            torch.cuda.synchronize()
            res['compileSeconds'] = time.time() - t0
        except Exception as e:  # report and fall back
            res['compileError'] = str(e)[:300]
            fstep, mode = step, 'eager'
        start = ctx + 3
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize(); t0 = time.time()
        for i in range(steps):
            if mode != 'eager':
                torch.compiler.cudagraph_mark_step_begin()
            nxt = fstep(nxt, torch.tensor([start + i], device='cuda')).clone()
        torch.cuda.synchronize(); dt = time.time() - t0
    res.update(mode=mode, msPerStep=1000 * dt / steps, msPerToken=1000 * dt / steps / batch, tokensPerSecond=steps * batch / dt,
               gpuMemUsedBytes=torch.cuda.max_memory_allocated())
    del cache
    torch.cuda.empty_cache()
    return res


if sys.argv[1] == '--configs':
    steps, outdir = int(sys.argv[3]), sys.argv[4]
    os.makedirs(outdir, exist_ok=True)
    for c in sys.argv[2].split(','):
        ctx, batch = (int(x) for x in c.split('x'))
        try:
            res = run(ctx, batch, steps)
        except Exception as e:
            res = {'context': ctx, 'batch': batch, 'error': str(e)[:300]}
        print(json.dumps(res), flush=True)
        name = f'torch-decode-{ctx}.json' if batch == 1 else f'torch-decode-{ctx}-b{batch}.json'
        json.dump(res, open(os.path.join(outdir, name), 'w'))
else:
    ctx, steps, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    res = run(ctx, 1, steps)
    print(json.dumps(res))
    json.dump(res, open(out, 'w'))
