"""Tiny StableLM (qk_layernorm) and Falcon decoders written after the Hugging Face modelling code
(own code, random weights, no transformers needed), exported with torch.onnx.export (TorchScript),
so that recognition meets the op patterns a real export writes:

- stablelm-qkln: StableLmForCausalLM with qk_layernorm=True: q and k, viewed as heads, are split
  head by head (torch.split along the head axis), each head through a LayerNorm of its own (γ, no
  β: StableLmLayerNormPerHead), concatenated back, then partial rotary; LayerNorm blocks,
  biased q/k/v, SiLU-gated MLP, grouped kv (repeat_kv).
- falcon-mq: FalconForCausalLM as falcon-7b: multi_query (one kv head), query_key_value packed
  [q heads…, k, v] and cut with [..., :-2, :], [..., [-2], :], [..., [-1], :]; one LayerNorm
  feeding attention and MLP in parallel; GELU MLP without a gate; rotary; no biases.
- falcon-gqa: new_decoder_architecture (falcon-40b/180b): num_kv_heads groups, each packed as
  [q… (heads/kv of them), k, v]; k and v broadcast to the query heads; two LayerNorms ln_attn
  and ln_mlp; biases on (as config.bias=True).
- falcon-alibi: falcon-rw's attention: ALiBi (build_alibi_tensor: per-head slopes times the
  cumulative positions) added to the scores, no rotary; twlac must refuse it (no program step adds
  a position bias to the scores).

    python3 scripts/families/export-stablelm-falcon.py OUT_DIR

writes stablelm-qkln.onnx, falcon-mq.onnx, falcon-gqa.onnx and falcon-alibi.onnx (under 200 KB each).
"""
import math
import os
import sys

import torch
from torch import nn

VOCAB, HIDDEN, HEADS, HEAD_DIM, INTER, LAYERS, EPS = 64, 32, 4, 8, 64, 2, 1e-5


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    def __init__(self, dim, theta=10000.0):
        super().__init__()
        self.register_buffer('inv_freq', 1.0 / (theta ** (torch.arange(0, dim, 2).float() / dim)), persistent=False)

    def forward(self, pos):
        freqs = (self.inv_freq[None, :, None] @ pos[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)


def layer_norm(dim):
    ln = nn.LayerNorm(dim, eps=EPS)
    nn.init.normal_(ln.weight, 1.0, 0.2)
    nn.init.normal_(ln.bias, 0.0, 0.1)
    return ln


def causal_mask(s):
    return torch.triu(torch.full((s, s), torch.finfo(torch.float32).min), diagonal=1)[None, None]


class LayerNormPerHead(nn.Module):
    """StableLmLayerNormPerHead: one LayerNorm (γ, no β) per head, applied head by head."""

    def __init__(self, heads):
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(HEAD_DIM) * 0.3 + 1.0) for _ in range(heads)])

    def forward(self, x):
        per_head = torch.split(x, 1, dim=1)
        return torch.cat([nn.functional.layer_norm(h, (HEAD_DIM,), w, None, EPS) for w, h in zip(self.weights, per_head)], dim=1)


class StableLmAttention(nn.Module):
    KV_HEADS, ROT = 2, HEAD_DIM // 2

    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(HIDDEN, HEADS * HEAD_DIM)
        self.k_proj = nn.Linear(HIDDEN, self.KV_HEADS * HEAD_DIM)
        self.v_proj = nn.Linear(HIDDEN, self.KV_HEADS * HEAD_DIM)
        self.o_proj = nn.Linear(HEADS * HEAD_DIM, HIDDEN, bias=False)
        self.q_layernorm = LayerNormPerHead(HEADS)
        self.k_layernorm = LayerNormPerHead(self.KV_HEADS)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, HEADS, HEAD_DIM).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.KV_HEADS, HEAD_DIM).transpose(1, 2)
        q, k = self.q_layernorm(q), self.k_layernorm(k)
        r = self.ROT
        qr, kr = q[..., :r], k[..., :r]
        qr, kr = qr * cos + rotate_half(qr) * sin, kr * cos + rotate_half(kr) * sin
        q, k = torch.cat((qr, q[..., r:]), dim=-1), torch.cat((kr, k[..., r:]), dim=-1)
        rep = HEADS // self.KV_HEADS
        k = k[:, :, None].expand(b, self.KV_HEADS, rep, s, HEAD_DIM).reshape(b, HEADS, s, HEAD_DIM)
        v = v[:, :, None].expand(b, self.KV_HEADS, rep, s, HEAD_DIM).reshape(b, HEADS, s, HEAD_DIM)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(HEAD_DIM) + mask
        p = nn.functional.softmax(w, dtype=torch.float32, dim=-1).to(v.dtype)
        return self.o_proj(torch.matmul(p, v).transpose(1, 2).contiguous().reshape(b, s, HIDDEN))


class StableLmLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = layer_norm(HIDDEN), layer_norm(HIDDEN)
        self.self_attn = StableLmAttention()
        self.gate_proj = nn.Linear(HIDDEN, INTER, bias=False)
        self.up_proj = nn.Linear(HIDDEN, INTER, bias=False)
        self.down_proj = nn.Linear(INTER, HIDDEN, bias=False)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))


class StableLm(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList([StableLmLayer() for _ in range(LAYERS)])
        self.norm = layer_norm(HIDDEN)
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)
        self.rotary_emb = Rotary(StableLmAttention.ROT)

    def forward(self, input_ids):
        s = input_ids.shape[1]
        x = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb(torch.arange(s)[None, :])
        mask = causal_mask(s)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


class FalconLinear(nn.Linear):
    """x @ Wᵀ (+ b), as FalconLinear writes it."""

    def forward(self, x):
        y = x @ self.weight.T
        return y if self.bias is None else y + self.bias


def build_alibi_tensor(mask, heads):
    """[batch·heads, 1, seq]: slope_h · (position of each key), as Falcon-RW and BLOOM build it."""
    b, s = mask.shape
    base = torch.tensor(2 ** (-(2 ** -(math.log2(heads) - 3))), dtype=torch.float32)
    slopes = torch.pow(base, torch.arange(1, 1 + heads, dtype=torch.int32))
    positions = ((mask.cumsum(dim=-1) - 1) * mask)[:, None, :]
    return (slopes[..., None] * positions).reshape(b * heads, 1, s)


class FalconAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.alibi = cfg.get('alibi', False)
        self.new_arch = cfg['new_decoder_architecture']
        self.kv = cfg['num_kv_heads'] if self.new_arch else 1
        self.query_key_value = FalconLinear(HIDDEN, (HEADS + 2 * self.kv) * HEAD_DIM, bias=cfg['bias'])
        self.dense = FalconLinear(HIDDEN, HIDDEN, bias=cfg['bias'])

    def split_heads(self, fused):
        b, s, _ = fused.shape
        if self.new_arch:
            qkv = fused.view(b, s, -1, HEADS // self.kv + 2, HEAD_DIM)
            q, k, v = qkv[:, :, :, :-2], qkv[:, :, :, [-2]], qkv[:, :, :, [-1]]
            # torch.broadcast_to, written as expand (torch 1.13 exports no aten::broadcast_to): the same Expand
            k, v = k.expand(q.shape), v.expand(q.shape)
            return [t.flatten(2, 3) for t in (q, k, v)]
        qkv = fused.view(b, s, HEADS + 2, HEAD_DIM)
        return qkv[..., :-2, :], qkv[..., [-2], :], qkv[..., [-1], :]

    def forward(self, x, rope, mask):
        q, k, v = self.split_heads(self.query_key_value(x))
        b, s, _, _ = q.shape
        kv = HEADS if self.new_arch else self.kv
        q = q.transpose(1, 2).reshape(b, HEADS, s, HEAD_DIM)
        k = k.transpose(1, 2).reshape(b, kv, s, HEAD_DIM)
        v = v.transpose(1, 2).reshape(b, kv, s, HEAD_DIM)
        if self.alibi:
            scores = (q @ k.transpose(-1, -2)).view(b, HEADS, s, s) + rope.view(b, HEADS, 1, s)
            scores *= 1 / math.sqrt(HEAD_DIM)
        else:
            cos, sin = rope
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            scores = q @ k.transpose(-1, -2)
            scores /= math.sqrt(HEAD_DIM)
        p = nn.functional.softmax(scores + mask, dim=-1, dtype=x.dtype)
        o = (p @ v).view(b, HEADS, s, HEAD_DIM).permute(0, 2, 1, 3).reshape(b, s, HEADS * HEAD_DIM)
        return self.dense(o)


class FalconLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.two_lns = cfg['new_decoder_architecture'] and cfg['num_ln_in_parallel_attn'] == 2
        if self.two_lns:
            self.ln_attn, self.ln_mlp = layer_norm(HIDDEN), layer_norm(HIDDEN)
        else:
            self.input_layernorm = layer_norm(HIDDEN)
        self.self_attention = FalconAttention(cfg)
        self.dense_h_to_4h = FalconLinear(HIDDEN, INTER, bias=cfg['bias'])
        self.dense_4h_to_h = FalconLinear(INTER, HIDDEN, bias=cfg['bias'])

    def forward(self, x, rope, mask):
        if self.two_lns:
            a, m = self.ln_attn(x), self.ln_mlp(x)
        else:
            a = m = self.input_layernorm(x)
        attn = self.self_attention(a, rope, mask)
        mlp = self.dense_4h_to_h(nn.functional.gelu(self.dense_h_to_4h(m)))
        mlp += attn
        return mlp + x


class Falcon(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, HIDDEN)
        self.h = nn.ModuleList([FalconLayer(cfg) for _ in range(LAYERS)])
        self.ln_f = layer_norm(HIDDEN)
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)
        self.alibi = cfg.get('alibi', False)
        self.rotary_emb = Rotary(HEAD_DIM)

    def forward(self, input_ids):
        s = input_ids.shape[1]
        x = self.word_embeddings(input_ids)
        rope = build_alibi_tensor(torch.ones_like(input_ids), HEADS) if self.alibi else self.rotary_emb(torch.arange(s)[None, :])
        mask = causal_mask(s)
        for layer in self.h:
            x = layer(x, rope, mask)
        return self.lm_head(self.ln_f(x))


# name: (module, opset). StableLM at opset 14: its LayerNorms decomposed (ReduceMean, Sub, Pow, …),
# the per-head ones with γ only; at opset 17 a LayerNormalization without its optional bias input
# crashes onnxruntime 1.x's session creation.
MODELS = {
    'stablelm-qkln': (StableLm, 14),
    'falcon-mq': (lambda: Falcon(dict(new_decoder_architecture=False, bias=False)), 17),
    'falcon-gqa': (lambda: Falcon(dict(new_decoder_architecture=True, num_kv_heads=2, num_ln_in_parallel_attn=2, bias=True)), 17),
    'falcon-alibi': (lambda: Falcon(dict(new_decoder_architecture=False, bias=True, alibi=True)), 17),
}

if __name__ == '__main__':
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for i, (name, (make, opset)) in enumerate(MODELS.items()):
        torch.manual_seed(2000 + i)
        m = make().eval()
        ids = torch.randint(0, VOCAB, (1, 12))
        path = os.path.join(out, f'{name}.onnx')
        torch.onnx.export(m, (ids,), path, input_names=['input_ids'], output_names=['logits'],
                          dynamic_axes={'input_ids': {0: 'batch', 1: 'sequence'}, 'logits': {0: 'batch', 1: 'sequence'}}, opset_version=opset)
        print(name, os.path.getsize(path))
