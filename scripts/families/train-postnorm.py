"""Train small Gemma-2- and OLMo-2-shaped decoders (the modules of export-postnorm.py, byte
vocabulary of 256) on the CPU for a time budget each, and export them with torch.onnx.export, so
that the choice of transforms for post-norm blocks can be measured on trained weights
(scripts/families/postnorm-rotation.ts). Needs only PyTorch (run with /usr/bin/python3).

usage:  SECONDS_EACH=600 /usr/bin/python3 scripts/families/train-postnorm.py TRAIN_TXT OUT_DIR
writes OUT_DIR/{gemma2,olmo2}/model.onnx and train-report.json (loss curve ends, steps).
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import importlib

ep = importlib.import_module('export-postnorm')

TRAIN, OUT = sys.argv[1], sys.argv[2]
SECONDS = float(os.environ.get('SECONDS_EACH', '600'))
SEQ, BATCH = 128, 8
torch.set_num_threads(int(os.environ.get('THREADS', '1')))
# Small enough to take about a thousand steps in ten minutes of one shared CPU core.
ep.VOCAB, ep.HIDDEN, ep.HEADS, ep.KV_HEADS, ep.HEAD_DIM, ep.INTER = 256, 64, 4, 2, 16, 192

CONFIGS = {
    # Gemma-2's caps and its alternation of local and global layers (window shorter than the windows evaluated)
    'gemma2': dict(ep.GEMMA2, attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=64,
                   query_pre_attn_scalar=16, window_mask='compare', layers=4),
    'olmo2': dict(ep.CONFIGS['olmo2'], layers=4),
}

data = torch.tensor(list(open(TRAIN, 'rb').read()), dtype=torch.long)
report = {}
for name, cfg in CONFIGS.items():
    torch.manual_seed(0)
    m = ep.Model(cfg)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=0.01)
    t0, step, losses = time.time(), 0, []
    while time.time() - t0 < SECONDS:
        at = torch.randint(0, len(data) - SEQ - 1, (BATCH,))
        x = torch.stack([data[i:i + SEQ] for i in at])
        y = torch.stack([data[i + 1:i + SEQ + 1] for i in at])
        loss = F.cross_entropy(m(x).reshape(-1, ep.VOCAB), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
    m.eval()
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    ids = data[:SEQ][None]
    torch.onnx.export(m, (ids,), os.path.join(d, 'model.onnx'), input_names=['input_ids'], output_names=['logits'],
                      dynamic_axes={'input_ids': {0: 'batch', 1: 'sequence'}, 'logits': {0: 'batch', 1: 'sequence'}}, opset_version=17)
    report[name] = {'steps': step, 'seconds': round(time.time() - t0), 'loss_first50': sum(losses[:50]) / 50, 'loss_last50': sum(losses[-50:]) / 50}
    print(name, report[name], flush=True)
json.dump(report, open(os.path.join(OUT, 'train-report.json'), 'w'), indent=1)
