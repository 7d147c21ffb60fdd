"""Build twlac's architecture test zoo on the GPU machine (torch + transformers + onnxruntime there).

For each decoder family, a tiny random-init Hugging Face model (hidden 128, 2 layers, head dim 64,
byte vocabulary of 256) is trained for a few hundred steps on byte-level text so its perplexity means
something, then exported the way users export:
  - torch.onnx.export(dynamo=True), opset 18 (every family; the TorchScript exporter as fallback);
  - torch.onnx.export(dynamo=False) (TorchScript) for a subset;
  - a KV-cache decoder (past_key_values in, present out) for a subset;
  - onnxruntime's transformer optimizer (fused norms / attention) for a subset.
Each export is checked against torch with onnxruntime (max |logit diff| on a 40-token prompt, longer
than the 16-token sliding windows). Output: $OUT/zoo.tar.gz holding zoo/<name>/model.onnx (+ data),
config.json, and zoo/tokenizer.json, zoo/zoo.json (what was built, checks, errors).

usage (device):  python3 scripts/device/make-zoo.py DATA_DIR   (DATA_DIR has train.txt, dev.txt)
"""
import json, math, os, shutil, sys, tarfile, tempfile, time, traceback
import numpy as np
import torch, torch.nn.functional as F
import onnx, onnxruntime as ort
import transformers
from transformers import AutoModelForCausalLM

OUT = os.environ.get("OUT") or tempfile.mkdtemp()
DATA = sys.argv[1] if len(sys.argv) > 1 else ".zoo-data"
ONLY = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else None
STEPS = int(os.environ.get("ZOO_STEPS", "400"))
DEADLINE = float(os.environ.get("ZOO_DEADLINE_S", "0"))  # stop starting families after this many seconds (0: none)
ZOO = os.path.join(tempfile.mkdtemp(), "zoo")
os.makedirs(ZOO)
dev = "cuda" if torch.cuda.is_available() else "cpu"
t_start = time.time()
report = {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
          "onnxruntime": ort.__version__, "steps": STEPS, "models": {}}

# Byte-level tokenizer: id = byte value (GPT-2's printable byte alphabet, no merges).
def byte_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]; n = 0
    for b in range(256):
        if b not in bs: bs.append(b); cs.append(256 + n); n += 1
    vocab = {chr(c): b for b, c in zip(bs, cs)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok

tok = byte_tokenizer()
tok.save(os.path.join(ZOO, "tokenizer.json"))
train_text = open(os.path.join(DATA, "train.txt"), encoding="utf-8").read()[:3_000_000]
dev_text = open(os.path.join(DATA, "dev.txt"), encoding="utf-8").read()[:200_000]
train_ids = torch.tensor(list(train_text.encode("utf-8")), dtype=torch.long)
dev_ids = torch.tensor(list(dev_text.encode("utf-8")), dtype=torch.long)
assert tok.encode(dev_text[:1000]).ids == list(dev_text[:1000].encode("utf-8")), "tokenizer ids are not bytes"

H, I, L, NH, KV, HD, V, W = 128, 128, 2, 2, 1, 64, 256, 16
common = dict(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=NH, max_position_embeddings=256,
              bos_token_id=0, eos_token_id=0, pad_token_id=0)

def cfg(name, **kw):
    C = transformers.AutoConfig.for_model(name, **kw)
    return C

FAMILIES = {
    "llama": lambda: cfg("llama", **common, num_key_value_heads=KV, intermediate_size=I, tie_word_embeddings=False),
    "mistral": lambda: cfg("mistral", **common, num_key_value_heads=KV, intermediate_size=I, head_dim=HD, sliding_window=W, tie_word_embeddings=False),
    "qwen2": lambda: cfg("qwen2", **common, num_key_value_heads=KV, intermediate_size=I, tie_word_embeddings=False),
    "qwen3": lambda: cfg("qwen3", **common, num_key_value_heads=KV, intermediate_size=I, head_dim=HD, tie_word_embeddings=False),
    "gemma": lambda: cfg("gemma", **common, num_key_value_heads=KV, intermediate_size=I, head_dim=HD, hidden_activation="gelu_pytorch_tanh"),
    "gemma2": lambda: cfg("gemma2", **common, num_key_value_heads=KV, intermediate_size=I, head_dim=HD, sliding_window=W,
                          attn_logit_softcapping=50.0, final_logit_softcapping=30.0, query_pre_attn_scalar=HD),
    "gemma3": lambda: cfg("gemma3_text", **common, num_key_value_heads=KV, intermediate_size=I, head_dim=HD, sliding_window=W,
                          query_pre_attn_scalar=HD, layer_types=["sliding_attention", "full_attention"]),
    "granite": lambda: cfg("granite", **common, num_key_value_heads=KV, intermediate_size=I, embedding_multiplier=12.0,
                           residual_multiplier=0.22, attention_multiplier=0.015625, logits_scaling=8.0, tie_word_embeddings=False),
    "olmo2": lambda: cfg("olmo2", **common, num_key_value_heads=KV, intermediate_size=I, tie_word_embeddings=False),
    "phi3": lambda: cfg("phi3", **common, num_key_value_heads=KV, intermediate_size=I, tie_word_embeddings=False),
    "gpt2": lambda: cfg("gpt2", vocab_size=V, n_embd=H, n_layer=L, n_head=NH, n_inner=2 * H, n_positions=256,
                        bos_token_id=0, eos_token_id=0),
    "gpt_neox": lambda: cfg("gpt_neox", **common, intermediate_size=2 * H, rotary_pct=0.25, use_parallel_residual=True,
                            tie_word_embeddings=False),
    "stablelm": lambda: cfg("stablelm", **common, num_key_value_heads=KV, intermediate_size=I, partial_rotary_factor=0.25,
                            tie_word_embeddings=False),
    "phi": lambda: cfg("phi", **common, intermediate_size=2 * H, partial_rotary_factor=0.5, tie_word_embeddings=False),
    "mixtral": lambda: cfg("mixtral", **common, num_key_value_heads=KV, intermediate_size=64, num_local_experts=2,
                           num_experts_per_tok=2, tie_word_embeddings=False),
}
TORCHSCRIPT = {"llama", "gpt2", "gpt_neox", "phi3", "qwen2"}
KVCACHE = {"llama", "qwen3", "mistral"}
FUSED = {"llama": "gpt2", "gpt2": "gpt2", "gpt_neox": "gpt_neox"}

def batches(ids, seq, bs, gen):
    n = len(ids) - seq - 1
    while True:
        s = torch.randint(0, n, (bs,), generator=gen)
        x = torch.stack([ids[i:i + seq] for i in s]); y = torch.stack([ids[i + 1:i + seq + 1] for i in s])
        yield x.to(dev), y.to(dev)

@torch.no_grad()
def ppl(m, ids, seq=128, n=64):
    m.eval(); tot = cnt = 0
    for i in range(n):
        x = ids[i * seq:(i + 1) * seq][None].to(dev); y = ids[i * seq + 1:(i + 1) * seq + 1][None].to(dev)
        lg = m(input_ids=x).logits.float()
        tot += F.cross_entropy(lg.reshape(-1, lg.size(-1)), y.reshape(-1), reduction="sum").item(); cnt += y.numel()
    return math.exp(tot / cnt)

def train(m, steps):
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.01)
    gen = torch.Generator().manual_seed(0); it = batches(train_ids, 128, 32, gen); m.train(); loss = None
    for s in range(steps):
        lr = 3e-3 * min(1, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / steps))
        for g in opt.param_groups: g["lr"] = lr
        x, y = next(it)
        with torch.autocast(dev, dtype=torch.bfloat16):
            lg = m(input_ids=x).logits
        loss = F.cross_entropy(lg.float().reshape(-1, lg.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    return float(loss)

class Logits(torch.nn.Module):
    def __init__(s, m): super().__init__(); s.m = m
    def forward(s, input_ids): return s.m(input_ids=input_ids, use_cache=False).logits

def files_of(d): return {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}

def check(path, m_cpu, rec, feed_fn=None):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = dev_ids[1000:1040][None]
    with torch.no_grad(): ref = m_cpu(input_ids=x, use_cache=False).logits.numpy()
    feed = feed_fn(s, x.numpy()) if feed_fn else {"input_ids": x.numpy()}
    got = s.run(None, feed)[0]
    rec["ort_vs_torch_max_abs"] = float(np.abs(got - ref).max())
    rec["ops"] = sorted({n.op_type for n in onnx.load(path, load_external_data=False).graph.node})

def export_plain(m_cpu, d, dynamo):
    os.makedirs(d, exist_ok=True); p = os.path.join(d, "model.onnx"); ex = torch.randint(0, V, (1, 24))
    if dynamo:
        B, S = torch.export.Dim("batch", max=16), torch.export.Dim("sequence", max=256)
        torch.onnx.export(Logits(m_cpu), (ex,), p, input_names=["input_ids"], output_names=["logits"],
                          dynamic_shapes={"input_ids": {0: B, 1: S}}, opset_version=18, dynamo=True)
    else:
        torch.onnx.export(Logits(m_cpu), (ex,), p, input_names=["input_ids"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}},
                          opset_version=17, dynamo=False)
    return p

def export_kv(m_cpu, c, d):
    from transformers import DynamicCache
    nl, kvh, hd = c.num_hidden_layers, c.num_key_value_heads, getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    class KVWrap(torch.nn.Module):
        def __init__(s, m): super().__init__(); s.m = m
        def forward(s, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache()
            for i in range(nl): cache.update(past[2 * i], past[2 * i + 1], i)
            o = s.m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, past_key_values=cache, use_cache=True)
            pk = o.past_key_values; pres = []
            for i in range(nl):
                lay = pk.layers[i] if hasattr(pk, "layers") else None
                pres += [lay.keys, lay.values] if lay is not None else [pk.key_cache[i], pk.value_cache[i]]
            return (o.logits, *pres)
    Bt, St, P = 1, 8, 12
    past = [torch.randn(Bt, kvh, P, hd) for _ in range(2 * nl)]
    am = torch.ones(Bt, P + St, dtype=torch.int64); pos = torch.arange(P, P + St)[None]; ids = torch.randint(0, V, (Bt, St))
    names_in = ["input_ids", "attention_mask", "position_ids"] + [f"past_key_values.{i}.{k}" for i in range(nl) for k in ("key", "value")]
    names_out = ["logits"] + [f"present.{i}.{k}" for i in range(nl) for k in ("key", "value")]
    bd, sd, pd, td = (torch.export.Dim(n, max=mx) for n, mx in (("batch", 16), ("seq", 256), ("past", 256), ("total", 512)))
    dyn = {"input_ids": {0: bd, 1: sd}, "attention_mask": {0: bd, 1: td}, "position_ids": {0: bd, 1: sd},
           "past": tuple({0: bd, 2: pd} for _ in range(2 * nl))}
    os.makedirs(d, exist_ok=True); p = os.path.join(d, "model.onnx")
    torch.onnx.export(KVWrap(m_cpu), (ids, am, pos, *past), p, input_names=names_in, output_names=names_out,
                      dynamic_shapes=dyn, opset_version=18, dynamo=True)
    def feed(s, x):
        f = {"input_ids": x, "attention_mask": np.ones_like(x), "position_ids": np.arange(x.shape[1])[None].astype(np.int64)}
        for i in range(nl):
            for k in ("key", "value"): f[f"past_key_values.{i}.{k}"] = np.zeros((1, kvh, 0, hd), np.float32)
        return f
    return p, feed

def inline_all(p):
    """Re-save with every initializer inline (one self-contained file, as small models are usually shipped)."""
    m = onnx.load(p, load_external_data=True)
    for f in os.listdir(os.path.dirname(p)):
        if f != "model.onnx": os.remove(os.path.join(os.path.dirname(p), f))
    onnx.save(m, p)

for fam, mk in FAMILIES.items():
    if ONLY and fam not in ONLY: continue
    if DEADLINE and time.time() - t_start > DEADLINE:
        report["models"][fam] = {"family": fam, "skipped": f"deadline {DEADLINE:.0f} s"}; print(fam, "skipped: deadline", flush=True); continue
    t0 = time.time(); rec = report["models"].setdefault(fam, {"family": fam})
    try:
        torch.manual_seed(0)
        c = mk(); c._attn_implementation = "eager"
        m = AutoModelForCausalLM.from_config(c, attn_implementation="eager").to(dev)
        rec["params"] = sum(p.numel() for p in m.parameters())
        rec["ppl_untrained"] = ppl(m, dev_ids)
        rec["train_loss"] = train(m, STEPS)
        rec["dev_ppl_torch"] = ppl(m, dev_ids)
        m = m.float().cpu().eval()
        cfg_dict = json.loads(c.to_json_string())
    except Exception:
        rec["error"] = traceback.format_exc()[-2000:]; print(fam, "FAILED", rec["error"][-400:], flush=True); continue
    styles = [("dynamo", True)] + ([("torchscript", False)] if fam in TORCHSCRIPT else [])
    for style, dyn in styles:
        name = f"{fam}-{style}"; d = os.path.join(ZOO, name); r = rec.setdefault("exports", {}).setdefault(style, {})
        try:
            p = export_plain(m, d, dyn); inline_all(p); check(p, m, r)
            json.dump(cfg_dict, open(os.path.join(d, "config.json"), "w"), indent=1); r["files"] = files_of(d)
        except Exception:
            r["error"] = traceback.format_exc()[-2000:]; shutil.rmtree(d, ignore_errors=True)
            if style == "dynamo" and fam not in TORCHSCRIPT:  # keep one export of every family
                try:
                    r2 = rec["exports"].setdefault("torchscript", {}); d2 = os.path.join(ZOO, f"{fam}-torchscript")
                    p = export_plain(m, d2, False); inline_all(p); check(p, m, r2)
                    json.dump(cfg_dict, open(os.path.join(d2, "config.json"), "w"), indent=1); r2["files"] = files_of(d2)
                except Exception:
                    r2["error"] = traceback.format_exc()[-2000:]; shutil.rmtree(d2, ignore_errors=True)
    if fam in KVCACHE:
        d = os.path.join(ZOO, f"{fam}-kv"); r = rec["exports"].setdefault("kv", {})
        try:
            p, feed = export_kv(m, c, d); inline_all(p); check(p, m, r, feed)
            json.dump(cfg_dict, open(os.path.join(d, "config.json"), "w"), indent=1); r["files"] = files_of(d)
        except Exception:
            r["error"] = traceback.format_exc()[-2000:]; shutil.rmtree(d, ignore_errors=True)
    if fam in FUSED and os.path.exists(os.path.join(ZOO, f"{fam}-dynamo", "model.onnx")):
        d = os.path.join(ZOO, f"{fam}-ortopt"); r = rec["exports"].setdefault("ortopt", {})
        try:
            from onnxruntime.transformers.optimizer import optimize_model
            om = optimize_model(os.path.join(ZOO, f"{fam}-dynamo", "model.onnx"), model_type=FUSED[fam], num_heads=NH, hidden_size=H, opt_level=1)
            os.makedirs(d, exist_ok=True); p = os.path.join(d, "model.onnx"); om.save_model_to_file(p); check(p, m, r)
            json.dump(cfg_dict, open(os.path.join(d, "config.json"), "w"), indent=1); r["files"] = files_of(d)
        except Exception:
            r["error"] = traceback.format_exc()[-2000:]; shutil.rmtree(d, ignore_errors=True)
    rec["seconds"] = round(time.time() - t0, 1)
    print(fam, {k: v for k, v in rec.items() if k not in ("exports",)},
          {s: (e.get("ort_vs_torch_max_abs"), "ERR" if "error" in e else "ok") for s, e in rec.get("exports", {}).items()}, flush=True)

report["seconds"] = round(time.time() - t_start, 1)
json.dump(report, open(os.path.join(ZOO, "zoo.json"), "w"), indent=1, default=str)
json.dump(report, open(os.path.join(OUT, "zoo.json"), "w"), indent=1, default=str)
with tarfile.open(os.path.join(OUT, "zoo.tar.gz"), "w:gz") as tf: tf.add(ZOO, arcname="zoo")
print("zoo done", report["seconds"], "s", os.path.getsize(os.path.join(OUT, "zoo.tar.gz")), "bytes", flush=True)
