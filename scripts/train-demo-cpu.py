"""Train the demo model on the CPU (a fallback for scripts/device/train-demo.py when no GPU machine is
at hand). Needs only PyTorch (Debian: apt-get install python3-torch; run with /usr/bin/python3).

A LLaMA-architecture decoder written out the way transformers' LlamaForCausalLM computes it
(decomposed RMSNorm, rotate_half RoPE from an inv_freq buffer, grouped-query attention with a causal
mask, SwiGLU MLP, untied embeddings): 4 layers, hidden 128, 2 heads of 64, 1 KV head, SwiGLU 384,
byte vocabulary of 256 (token id = UTF-8 byte, as twlac's byte-level tokenizer.json says): 0.85 M
parameters, 3.4 MB in fp32. Trained for a time budget on the Python documentation text (PSF licence,
demo/model/DATA-LICENSE), exported with torch.onnx.export (opset 17) to one self-contained model.onnx.

usage:  DEMO_SECONDS=1200 /usr/bin/python3 scripts/train-demo-cpu.py TRAIN_TXT OUT_DIR
The demo ships OUT_DIR's model.onnx, config.json and train-report.json under demo/model/;
scripts/make-demo-data.sh cuts demo/data/ (calibration and held-out slices) and DATA-LICENSE.
"""
import json, math, os, sys, time
import torch, torch.nn as nn, torch.nn.functional as F

TRAIN, OUT = sys.argv[1], sys.argv[2]
SECONDS = float(os.environ.get("DEMO_SECONDS", "1200"))
torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
V, H, L, NH, KV, HD, I, EPS, THETA = 256, 128, 4, 2, 1, 64, 384, 1e-5, 10000.0

class RMSNorm(nn.Module):
    def __init__(s, d): super().__init__(); s.weight = nn.Parameter(torch.ones(d))
    def forward(s, x):
        v = x.pow(2).mean(-1, keepdim=True)
        return s.weight * (x * torch.rsqrt(v + EPS))

def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)

class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.input_layernorm, s.post_attention_layernorm = RMSNorm(H), RMSNorm(H)
        s.q_proj, s.k_proj = nn.Linear(H, NH * HD, bias=False), nn.Linear(H, KV * HD, bias=False)
        s.v_proj, s.o_proj = nn.Linear(H, KV * HD, bias=False), nn.Linear(NH * HD, H, bias=False)
        s.gate_proj, s.up_proj, s.down_proj = nn.Linear(H, I, bias=False), nn.Linear(H, I, bias=False), nn.Linear(I, H, bias=False)
    def forward(s, x, cos, sin, mask):
        b, t, _ = x.shape
        a = s.input_layernorm(x)
        q = s.q_proj(a).view(b, t, NH, HD).transpose(1, 2)
        k = s.k_proj(a).view(b, t, KV, HD).transpose(1, 2)
        v = s.v_proj(a).view(b, t, KV, HD).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k[:, :, None].expand(b, KV, NH // KV, t, HD).reshape(b, NH, t, HD)
        v = v[:, :, None].expand(b, KV, NH // KV, t, HD).reshape(b, NH, t, HD)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(HD) + mask
        o = torch.matmul(F.softmax(w, dim=-1, dtype=torch.float32), v).transpose(1, 2).reshape(b, t, NH * HD)
        h = x + s.o_proj(o)
        m = s.post_attention_layernorm(h)
        return h + s.down_proj(F.silu(s.gate_proj(m)) * s.up_proj(m))

class Llama(nn.Module):
    def __init__(s):
        super().__init__()
        s.embed_tokens = nn.Embedding(V, H)
        s.layers = nn.ModuleList(Block() for _ in range(L))
        s.norm, s.lm_head = RMSNorm(H), nn.Linear(H, V, bias=False)
        s.register_buffer("inv_freq", 1.0 / THETA ** (torch.arange(0, HD, 2).float() / HD), persistent=False)
        for p in s.parameters():
            if p.dim() == 2: nn.init.normal_(p, std=0.02)
    def forward(s, input_ids):
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device).float()
        freqs = pos[:, None] * s.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        mask = torch.full((t, t), torch.finfo(torch.float32).min).triu(1)[None, None]
        x = s.embed_tokens(input_ids)
        for blk in s.layers: x = blk(x, cos, sin, mask)
        return s.lm_head(s.norm(x))

data = torch.tensor(list(open(TRAIN, "rb").read()), dtype=torch.long)
split = int(len(data) * 0.98)
train, held = data[:split], data[split:]
model = Llama()
n_params = sum(p.numel() for p in model.parameters())
SEQ, BS = 128, 16
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
gen = torch.Generator().manual_seed(0)
t0, step, est = time.time(), 0, None
while time.time() - t0 < SECONDS:
    if step == 20: est = int(20 * SECONDS / (time.time() - t0))
    lr = 3e-3 * min(1, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step / est, 1))) if est else 1)
    for g in opt.param_groups: g["lr"] = lr
    s = torch.randint(0, len(train) - SEQ - 1, (BS,), generator=gen)
    x = torch.stack([train[i:i + SEQ] for i in s]); y = torch.stack([train[i + 1:i + SEQ + 1] for i in s])
    loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
    opt.zero_grad(set_to_none=True); loss.backward(); nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); step += 1
    if step % 200 == 0: print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
model.eval()
with torch.no_grad():
    n = min(40, (len(held) - 1) // SEQ)
    nll = sum(F.cross_entropy(model(held[i * SEQ:(i + 1) * SEQ][None]).reshape(-1, V), held[i * SEQ + 1:(i + 1) * SEQ + 1], reduction="sum").item() for i in range(n))
    held_ppl = math.exp(nll / (n * SEQ))
    ids = list("The ".encode())
    for _ in range(80): ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
os.makedirs(OUT, exist_ok=True)
torch.onnx.export(model, (torch.randint(0, V, (1, 16)),), os.path.join(OUT, "model.onnx"), input_names=["input_ids"], output_names=["logits"],
                  dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}, opset_version=17)
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": H, "num_hidden_layers": L,
       "num_attention_heads": NH, "num_key_value_heads": KV, "head_dim": HD, "intermediate_size": I, "rms_norm_eps": EPS,
       "rope_theta": THETA, "max_position_embeddings": 512, "tie_word_embeddings": False}
json.dump(cfg, open(os.path.join(OUT, "config.json"), "w"), indent=1)
rep = {"params": n_params, "steps": step, "tokens": step * BS * SEQ, "seconds": round(time.time() - t0), "train_loss": loss.item(),
       "heldout_bytes_ppl": held_ppl, "greedy_sample": bytes(ids).decode("utf-8", "replace"), "torch": torch.__version__,
       "exporter": "torch.onnx.export (TorchScript), opset 17", "train_text": os.path.basename(TRAIN), "train_fraction": 0.98}
json.dump(rep, open(os.path.join(OUT, "train-report.json"), "w"), indent=1)
print(json.dumps(rep, indent=1))
