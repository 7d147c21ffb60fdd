"""Export tiny GPT-2, GPT-NeoX (Pythia) and Phi-2 shaped models with torch.onnx.export.

The modules below are written from the descriptions of these architectures in Hugging Face
transformers (GPT-2's Conv1D c_attn split three ways, the bool causal buffer and NewGELU;
GPT-NeoX's query_key_value viewed as [heads, 3 * head_size] and sliced, baddbmm scores,
partial rotary from cached cos/sin tables, parallel residual; Phi-2's one input_layernorm
feeding attention and MLP in parallel, partial rotary, fc1/fc2 with NewGELU and an lm_head
with a bias), so that twlac's recognition is tested on the op patterns torch's TorchScript
exporter really writes, not only on the graph builder's. Random weights, seeded; the outputs
are small (< 200 KB each) and go to test/fixtures/gpt-shapes/.

Run with torch (1.13 or newer, no transformers needed):
    python3 scripts/export-gpt-shapes.py [out_dir]
"""
import math
import os
import sys

import torch
from torch import nn

VOCAB, HIDDEN, HEADS, LAYERS, POSITIONS = 32, 32, 2, 2, 32
MLP = 2 * HIDDEN
HEAD = HIDDEN // HEADS


class Conv1D(nn.Module):
    """GPT-2's linear: y = x @ W + b with W stored [in, out], through addmm on a 2-D view."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.2)
        self.bias = nn.Parameter(torch.randn(nf) * 0.05)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


def new_gelu(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def randomize_norms(model):
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.normal_(m.weight, 1.0, 0.1)
            nn.init.normal_(m.bias, 0.0, 0.05)


class Gpt2Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = Conv1D(3 * HIDDEN, HIDDEN)
        self.c_proj = Conv1D(HIDDEN, HIDDEN)
        self.register_buffer("bias", torch.tril(torch.ones(POSITIONS, POSITIONS, dtype=torch.bool)).view(1, 1, POSITIONS, POSITIONS))

    def split_heads(self, t):
        return t.view(t.size()[:-1] + (HEADS, HEAD)).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.c_attn(x).split(HIDDEN, dim=2)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
        ql, kl = q.size(-2), k.size(-2)
        causal = self.bias[:, :, kl - ql : kl, :kl]
        w = torch.where(causal, w, torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
        a = torch.matmul(nn.functional.softmax(w, dim=-1), v)
        a = a.permute(0, 2, 1, 3).contiguous()
        return self.c_proj(a.view(a.size()[:-2] + (HIDDEN,)))


class Gpt2Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(HIDDEN)
        self.attn = Gpt2Attention()
        self.ln_2 = nn.LayerNorm(HIDDEN)
        self.c_fc = Conv1D(MLP, HIDDEN)
        self.c_proj = Conv1D(HIDDEN, MLP)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(new_gelu(self.c_fc(self.ln_2(x))))


class Gpt2(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, HIDDEN)
        self.wpe = nn.Embedding(POSITIONS, HIDDEN)
        self.h = nn.ModuleList([Gpt2Block() for _ in range(LAYERS)])
        self.ln_f = nn.LayerNorm(HIDDEN)
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, input_ids):
        position_ids = torch.arange(0, input_ids.size(-1), dtype=torch.long).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(position_ids)
        for b in self.h:
            x = b(x)
        return self.lm_head(self.ln_f(x))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    """Cached cos/sin tables [positions, rot], gathered by position ids."""

    def __init__(self, rot):
        super().__init__()
        inv_freq = 1.0 / (10000 ** (torch.arange(0, rot, 2).float() / rot))
        t = torch.arange(POSITIONS).float()
        emb = torch.cat([torch.outer(t, inv_freq)] * 2, dim=-1)
        self.register_buffer("cos_cached", emb.cos()[None, None, :, :])
        self.register_buffer("sin_cached", emb.sin()[None, None, :, :])

    def forward(self, q, k, position_ids):
        cos = self.cos_cached.squeeze(1).squeeze(0)[position_ids].unsqueeze(1)
        sin = self.sin_cached.squeeze(1).squeeze(0)[position_ids].unsqueeze(1)
        return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


class NeoxAttention(nn.Module):
    def __init__(self, rot):
        super().__init__()
        self.rot = rot
        self.rotary = Rotary(rot)
        self.query_key_value = nn.Linear(HIDDEN, 3 * HIDDEN)
        self.dense = nn.Linear(HIDDEN, HIDDEN)
        self.norm_factor = math.sqrt(HEAD)
        self.register_buffer("bias", torch.tril(torch.ones(POSITIONS, POSITIONS, dtype=torch.bool)).view(1, 1, POSITIONS, POSITIONS))

    def forward(self, x, position_ids):
        qkv = self.query_key_value(x)
        qkv = qkv.view(qkv.size()[:-1] + (HEADS, 3 * HEAD))
        q = qkv[..., :HEAD].permute(0, 2, 1, 3)
        k = qkv[..., HEAD : 2 * HEAD].permute(0, 2, 1, 3)
        v = qkv[..., 2 * HEAD :].permute(0, 2, 1, 3)
        qr, kr = self.rotary(q[..., : self.rot], k[..., : self.rot], position_ids)
        q = torch.cat((qr, q[..., self.rot :]), dim=-1)
        k = torch.cat((kr, k[..., self.rot :]), dim=-1)
        b, nh, ql, hd = q.size()
        kl = k.size(-2)
        scores = torch.zeros(b * nh, ql, kl, dtype=q.dtype)
        scores = torch.baddbmm(scores, q.reshape(b * nh, ql, hd), k.reshape(b * nh, kl, hd).transpose(1, 2), beta=1.0, alpha=(torch.tensor(1.0) / self.norm_factor))
        scores = scores.view(b, nh, ql, kl)
        causal = self.bias[:, :, kl - ql : kl, :kl]
        scores = torch.where(causal, scores, torch.tensor(torch.finfo(scores.dtype).min, dtype=scores.dtype))
        a = torch.matmul(nn.functional.softmax(scores, dim=-1), v)
        a = a.permute(0, 2, 1, 3).contiguous().view(b, ql, HIDDEN)
        return self.dense(a)


class NeoxLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(HIDDEN)
        self.post_attention_layernorm = nn.LayerNorm(HIDDEN)
        self.attention = NeoxAttention(HEAD // 4)
        self.dense_h_to_4h = nn.Linear(HIDDEN, MLP)
        self.dense_4h_to_h = nn.Linear(MLP, HIDDEN)

    def forward(self, x, position_ids):
        attn = self.attention(self.input_layernorm(x), position_ids)
        mlp = self.dense_4h_to_h(nn.functional.gelu(self.dense_h_to_4h(self.post_attention_layernorm(x))))
        return mlp + attn + x


class Neox(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_in = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList([NeoxLayer() for _ in range(LAYERS)])
        self.final_layer_norm = nn.LayerNorm(HIDDEN)
        self.embed_out = nn.Linear(HIDDEN, VOCAB, bias=False)

    def forward(self, input_ids):
        position_ids = torch.arange(0, input_ids.size(-1), dtype=torch.long).unsqueeze(0)
        x = self.embed_in(input_ids)
        for layer in self.layers:
            x = layer(x, position_ids)
        return self.embed_out(self.final_layer_norm(x))


class PhiAttention(nn.Module):
    def __init__(self, rot):
        super().__init__()
        self.rot = rot
        self.rotary = Rotary(rot)
        self.q_proj = nn.Linear(HIDDEN, HIDDEN)
        self.k_proj = nn.Linear(HIDDEN, HIDDEN)
        self.v_proj = nn.Linear(HIDDEN, HIDDEN)
        self.dense = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x, position_ids, mask):
        b, s, _ = x.size()
        q = self.q_proj(x).view(b, s, HEADS, HEAD).transpose(1, 2)
        k = self.k_proj(x).view(b, s, HEADS, HEAD).transpose(1, 2)
        v = self.v_proj(x).view(b, s, HEADS, HEAD).transpose(1, 2)
        qr, kr = self.rotary(q[..., : self.rot], k[..., : self.rot], position_ids)
        q = torch.cat((qr, q[..., self.rot :]), dim=-1)
        k = torch.cat((kr, k[..., self.rot :]), dim=-1)
        w = torch.matmul(q.to(torch.float32), k.to(torch.float32).transpose(2, 3)) / math.sqrt(HEAD)
        w = w + mask
        w = nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(v.dtype)
        a = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(b, s, HIDDEN)
        return self.dense(a)


class PhiLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(HIDDEN)
        self.self_attn = PhiAttention(int(0.4 * HEAD) // 2 * 2)
        self.fc1 = nn.Linear(HIDDEN, MLP)
        self.fc2 = nn.Linear(MLP, HIDDEN)

    def forward(self, x, position_ids, mask):
        residual = x
        x = self.input_layernorm(x)
        attn = self.self_attn(x, position_ids, mask)
        ff = self.fc2(new_gelu(self.fc1(x)))
        return attn + ff + residual


class Phi(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList([PhiLayer() for _ in range(LAYERS)])
        self.final_layernorm = nn.LayerNorm(HIDDEN)
        self.lm_head = nn.Linear(HIDDEN, VOCAB)

    def forward(self, input_ids):
        s = input_ids.size(-1)
        position_ids = torch.arange(0, s, dtype=torch.long).unsqueeze(0)
        mask = torch.full((s, s), torch.finfo(torch.float32).min).triu(1)[None, None, :, :]
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, position_ids, mask)
        return self.lm_head(self.final_layernorm(x))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "gpt-shapes")
    os.makedirs(out, exist_ok=True)
    for i, (name, cls, opset) in enumerate([("gpt2-ts14", Gpt2, 14), ("neox-ts14", Neox, 14), ("phi2-ts17", Phi, 17)]):
        torch.manual_seed(100 + i)
        model = cls().eval()
        randomize_norms(model)
        ids = torch.randint(0, VOCAB, (1, 8))
        path = os.path.join(out, f"{name}.onnx")
        torch.onnx.export(model, (ids,), path, input_names=["input_ids"], output_names=["logits"], dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}, opset_version=opset)
        print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
