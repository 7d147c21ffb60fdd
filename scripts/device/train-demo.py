"""Train the small model that `twlac demo` ships (GPU machine: torch + transformers + tokenizers).

A LLaMA-architecture model (4 layers, hidden 128, 2 heads of 64, 1 KV head, SwiGLU 384, untied
embeddings, byte-level BPE of 1024 tokens: about 1.05 M parameters, 4.2 MB in fp32) trained on the
Python documentation text (PSF licence; see demo/model/DATA-LICENSE) for a fixed time budget, then
exported with torch.onnx.export(dynamo=True) into one self-contained model.onnx and checked against
torch with onnxruntime.

usage (device):  DEMO_SECONDS=180 python3 scripts/device/train-demo.py DATA_DIR   -> $OUT/demo.tar.gz
"""
import json, math, os, sys, tarfile, tempfile, time
import numpy as np, torch, torch.nn.functional as F
import onnx, onnxruntime as ort
from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders
from transformers import LlamaConfig, LlamaForCausalLM

OUT = os.environ.get("OUT") or tempfile.mkdtemp()
DATA = sys.argv[1] if len(sys.argv) > 1 else ".zoo-data"
SECONDS = float(os.environ.get("DEMO_SECONDS", "180"))
D = os.path.join(tempfile.mkdtemp(), "demo-model"); os.makedirs(D)
torch.manual_seed(0)
rep = {"torch": torch.__version__}
train_text = open(f"{DATA}/train.txt", encoding="utf-8").read()
dev_text = open(f"{DATA}/dev.txt", encoding="utf-8").read()

tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=1024, min_frequency=2, special_tokens=["<|endoftext|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator([train_text[i:i + 100000] for i in range(0, len(train_text), 100000)], trainer)
tok.save(f"{D}/tokenizer.json")
enc = lambda t: torch.tensor([i for k in range(0, len(t), 200000) for i in tok.encode(t[k:k + 200000]).ids], dtype=torch.long)
train_ids, dev_ids = enc(train_text), enc(dev_text[:400000])
rep["tokens"] = {"train": len(train_ids), "dev_slice": len(dev_ids)}

cfg = LlamaConfig(vocab_size=1024, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=10000.0,
                  tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
model = LlamaForCausalLM(cfg).cuda()
rep["params"] = sum(p.numel() for p in model.parameters())
SEQ, BS = 256, 64
opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1)
gen = torch.Generator().manual_seed(0)

@torch.no_grad()
def ppl(m, ids, n=100):
    m.eval(); tot = cnt = 0
    for i in range(min(n, (len(ids) - 1) // SEQ)):
        x = ids[i * SEQ:(i + 1) * SEQ][None].cuda(); y = ids[i * SEQ + 1:(i + 1) * SEQ + 1][None].cuda()
        lg = m(input_ids=x).logits.float()
        tot += F.cross_entropy(lg.reshape(-1, lg.size(-1)), y.reshape(-1), reduction="sum").item(); cnt += y.numel()
    m.train(); return math.exp(tot / cnt)

t0 = time.time(); step = 0; est_steps = None
while time.time() - t0 < SECONDS:
    if step == 50: est_steps = int(50 * SECONDS / (time.time() - t0))
    total = est_steps or 10 ** 9
    lr = 2e-3 * min(1, (step + 1) / 100) * (0.5 * (1 + math.cos(math.pi * min(step / total, 1))) if est_steps else 1)
    for g in opt.param_groups: g["lr"] = lr
    s = torch.randint(0, len(train_ids) - SEQ - 1, (BS,), generator=gen)
    x = torch.stack([train_ids[i:i + SEQ] for i in s]).cuda(); y = torch.stack([train_ids[i + 1:i + SEQ + 1] for i in s]).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        lg = model(input_ids=x).logits
    loss = F.cross_entropy(lg.float().reshape(-1, cfg.vocab_size), y.reshape(-1))
    opt.zero_grad(set_to_none=True); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); step += 1
    if step % 500 == 0: print("step", step, float(loss), f"{time.time() - t0:.0f}s", flush=True)
rep["steps"] = step; rep["train_loss"] = float(loss); rep["dev_slice_ppl_torch"] = ppl(model, dev_ids)
model = model.float().cpu().eval()

class Wrap(torch.nn.Module):
    def __init__(s, m): super().__init__(); s.m = m
    def forward(s, input_ids): return s.m(input_ids=input_ids, use_cache=False).logits
p = f"{D}/model.onnx"
torch.onnx.export(Wrap(model), (torch.randint(0, 1024, (1, 16)),), p, input_names=["input_ids"], output_names=["logits"],
                  dynamic_shapes={"input_ids": {0: torch.export.Dim("batch", max=64), 1: torch.export.Dim("sequence", max=512)}},
                  opset_version=18, dynamo=True)
m = onnx.load(p, load_external_data=True)
for f in os.listdir(D):
    if f.startswith("model.onnx"): os.remove(f"{D}/{f}")
onnx.save(m, p)
s = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
x = dev_ids[:128][None]
with torch.no_grad(): ref = model(input_ids=x).logits.numpy()
rep["ort_vs_torch_max_abs"] = float(np.abs(s.run(None, {"input_ids": x.numpy()})[0] - ref).max())
ids = tok.encode("The ").ids
with torch.no_grad():
    for _ in range(60): ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
rep["greedy_sample"] = tok.decode(ids)
json.dump(json.loads(cfg.to_json_string()), open(f"{D}/config.json", "w"), indent=1)
rep["files"] = {f: os.path.getsize(f"{D}/{f}") for f in os.listdir(D)}
json.dump(rep, open(f"{D}/report.json", "w"), indent=1)
json.dump(rep, open(f"{OUT}/demo.json", "w"), indent=1)
with tarfile.open(f"{OUT}/demo.tar.gz", "w:gz") as tf: tf.add(D, arcname="demo-model")
print(json.dumps(rep, indent=1), flush=True)
