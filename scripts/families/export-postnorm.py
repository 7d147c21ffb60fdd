"""Tiny Gemma-2-, Gemma-3- and OLMo-2-shaped decoders written after the Hugging Face modelling
code (own code, random weights, no transformers needed), exported with torch.onnx.export
(TorchScript), so that recognition meets the op patterns a real export writes: (1 + w) RMSNorm
in float32, soft-capping as Div/Tanh/Mul, the sliding-window mask as torch.tril (older
transformers) or as position comparisons (newer), q/k norm over the whole projection.

    python3 scripts/families/export-postnorm.py OUT_DIR

writes gemma2-tril.onnx, gemma2-compare.onnx, gemma3.onnx and olmo2.onnx (100 to 200 KB each).
"""
import math
import os
import sys

import torch
from torch import nn

VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER, LAYERS = 64, 32, 4, 2, 8, 48, 2


class RMSNorm(nn.Module):
    def __init__(self, dim, eps, unit_offset):
        super().__init__()
        self.eps, self.unit_offset = eps, unit_offset
        # Gemma stores w and multiplies by (1 + w); OLMo-2 stores γ
        self.weight = nn.Parameter(torch.randn(dim) * 0.1 + (0.0 if unit_offset else 1.0))

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.unit_offset:
            return (h * (1.0 + self.weight.float())).type_as(x)
        return self.weight * h.to(x.dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    def __init__(self, theta):
        super().__init__()
        self.register_buffer('inv_freq', 1.0 / (theta ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM)), persistent=False)

    def forward(self, pos):
        freqs = (self.inv_freq[None, :, None] @ pos[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


class Attention(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.cfg = cfg
        self.q_proj = nn.Linear(HIDDEN, HEADS * HEAD_DIM, bias=False)
        self.k_proj = nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False)
        self.v_proj = nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False)
        self.o_proj = nn.Linear(HEADS * HEAD_DIM, HIDDEN, bias=False)
        self.scaling = cfg['query_pre_attn_scalar'] ** -0.5
        qk = cfg.get('qk_norm')
        if qk == 'head':
            self.q_norm, self.k_norm = RMSNorm(HEAD_DIM, 1e-6, True), RMSNorm(HEAD_DIM, 1e-6, True)
        elif qk == 'all':
            self.q_norm, self.k_norm = RMSNorm(HEADS * HEAD_DIM, 1e-6, False), RMSNorm(KV_HEADS * HEAD_DIM, 1e-6, False)
        self.qk = qk

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.qk == 'all':
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(b, s, -1, HEAD_DIM).transpose(1, 2)
        k = k.view(b, s, -1, HEAD_DIM).transpose(1, 2)
        v = v.view(b, s, -1, HEAD_DIM).transpose(1, 2)
        if self.qk == 'head':
            q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = HEADS // KV_HEADS
        k = k[:, :, None].expand(b, KV_HEADS, rep, s, HEAD_DIM).reshape(b, HEADS, s, HEAD_DIM)
        v = v[:, :, None].expand(b, KV_HEADS, rep, s, HEAD_DIM).reshape(b, HEADS, s, HEAD_DIM)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        cap = self.cfg.get('attn_logit_softcapping')
        if cap:
            w = torch.tanh(w / cap) * cap
        w = w + mask
        p = nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(p, v).transpose(1, 2).reshape(b, s, -1)
        return self.o_proj(o)


class Mlp(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.gate_proj = nn.Linear(HIDDEN, INTER, bias=False)
        self.up_proj = nn.Linear(HIDDEN, INTER, bias=False)
        self.down_proj = nn.Linear(INTER, HIDDEN, bias=False)
        self.act = act

    def forward(self, x):
        g = self.gate_proj(x)
        a = nn.functional.gelu(g, approximate='tanh') if self.act == 'gelu-tanh' else nn.functional.silu(g)
        return self.down_proj(a * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, cfg, i):
        super().__init__()
        self.cfg, self.sandwich = cfg, cfg['norms'] == 'sandwich'
        self.is_sliding = cfg.get('sliding_window') is not None and (i + 1) % cfg['sliding_pattern'] != 0
        offset = self.sandwich
        self.self_attn = Attention(cfg, i)
        self.mlp = Mlp(cfg['act'])
        if self.sandwich:
            self.input_layernorm = RMSNorm(HIDDEN, 1e-6, offset)
            self.pre_feedforward_layernorm = RMSNorm(HIDDEN, 1e-6, offset)
        self.post_attention_layernorm = RMSNorm(HIDDEN, 1e-6, offset)
        self.post_feedforward_layernorm = RMSNorm(HIDDEN, 1e-6, offset)

    def forward(self, x, rope, mask):
        cos, sin = rope['local' if self.is_sliding else 'global']
        if self.is_sliding:
            w = self.cfg['sliding_window']
            if self.cfg['window_mask'] == 'tril':
                # older transformers: mask the keys w or more behind the query with tril(ones, -w)
                far = torch.tril(torch.ones_like(mask, dtype=torch.bool), diagonal=-w)
                mask = torch.where(far, torch.tensor(torch.finfo(mask.dtype).min, dtype=mask.dtype), mask)
            else:
                # newer transformers: key kv_idx is visible when kv_idx > q_idx − w
                s = mask.shape[-1]
                idx = torch.arange(s)
                far = ~(idx[None, :] > idx[:, None] - w)
                mask = mask.masked_fill(far, torch.finfo(mask.dtype).min)
        h = self.input_layernorm(x) if self.sandwich else x
        x = x + self.post_attention_layernorm(self.self_attn(h, cos, sin, mask))
        h = self.pre_feedforward_layernorm(x) if self.sandwich else x
        return x + self.post_feedforward_layernorm(self.mlp(h))


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList([Layer(cfg, i) for i in range(LAYERS if 'layers' not in cfg else cfg['layers'])])
        self.norm = RMSNorm(HIDDEN, 1e-6, cfg['norms'] == 'sandwich')
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)
        self.rotary_emb = Rotary(cfg['rope_theta'])
        self.rotary_local = Rotary(cfg.get('rope_local_base_freq', cfg['rope_theta']))

    def forward(self, input_ids):
        s = input_ids.shape[1]
        x = self.embed_tokens(input_ids)
        if self.cfg['norms'] == 'sandwich':
            x = x * torch.tensor(HIDDEN**0.5, dtype=x.dtype)
        pos = torch.arange(s)[None, :]
        g = self.rotary_emb(pos)
        rope = {'global': g, 'local': self.rotary_local(pos) if 'rope_local_base_freq' in self.cfg else g}
        mask = torch.triu(torch.full((s, s), torch.finfo(torch.float32).min), diagonal=1)[None, None]
        for layer in self.layers:
            x = layer(x, rope, mask)
        logits = self.lm_head(self.norm(x))
        cap = self.cfg.get('final_logit_softcapping')
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits


GEMMA2 = dict(norms='sandwich', act='gelu-tanh', query_pre_attn_scalar=16, attn_logit_softcapping=2.0,
              final_logit_softcapping=3.0, sliding_window=4, sliding_pattern=2, rope_theta=10000.0)
CONFIGS = {
    'gemma2-tril': dict(GEMMA2, window_mask='tril'),
    'gemma2-compare': dict(GEMMA2, window_mask='compare'),
    'gemma3': dict(norms='sandwich', act='gelu-tanh', query_pre_attn_scalar=HEAD_DIM, qk_norm='head', sliding_window=4,
                   sliding_pattern=3, layers=3, window_mask='compare', rope_theta=1000000.0, rope_local_base_freq=10000.0),
    'olmo2': dict(norms='post', act='silu', query_pre_attn_scalar=HEAD_DIM, qk_norm='all', rope_theta=500000.0),
}

if __name__ == '__main__':
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        torch.manual_seed(1000 + i)
        m = Model(cfg).eval()
        ids = torch.randint(0, VOCAB, (1, 12))
        torch.onnx.export(m, (ids,), os.path.join(out, f'{name}.onnx'), input_names=['input_ids'], output_names=['logits'],
                          dynamic_axes={'input_ids': {0: 'batch', 1: 'sequence'}, 'logits': {0: 'batch', 1: 'sequence'}}, opset_version=17)
        print(name, os.path.getsize(os.path.join(out, f'{name}.onnx')))
