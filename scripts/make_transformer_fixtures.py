"""Regenerate tests/fixtures/transformers/: small GPT-2-like and Llama-like models,
initialized the way their reference code does, exported with both PyTorch exporters.

    PYTHONPATH=$PWD /work/torchenv/bin/python scripts/make_transformer_fixtures.py

* ``gpt2``: Hugging Face GPT-2's ``_init_weights``: every Conv1D/Linear/Embedding
  weight N(0, 0.02), biases 0, LayerNorm 1/0, then every ``c_proj.weight`` (the
  residual output projections) N(0, 0.02/√(2·n_layer)).
* ``gpt2_missed``: the same, except that the MLP input layer ``c_fc`` is an
  ``nn.Linear`` while ``_init_weights`` only handles ``Conv1D``: the four ``c_fc``
  weights keep PyTorch's default (kaiming_uniform_ a=√5, var 1/(3·fan_in)).
* ``llama``: Hugging Face Llama's ``_init_weights``: every Linear and Embedding
  N(0, 0.02), RMSNorm 1; SwiGLU MLP, q/k/v/o projections, untied lm_head.
* ``llama_missed``: the init tests ``type(module) is nn.Linear``, so ``down_proj``,
  a ``RowParallelLinear(nn.Linear)`` subclass, keeps PyTorch's default.

``expected.json`` records, for each model, which weights the init function missed
(by parameter name and by torch's std), so tests do not rely on initaudit's word.
"""
from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "transformers"
N_LAYER, D, HEADS, VOCAB, SEQ = 4, 32, 4, 64, 8
STD = 0.02


class Conv1D(nn.Module):
    """GPT-2's Conv1D: a linear layer whose weight is stored [in, out]."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=STD)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.weight.size(-1),)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size_out)


class GPT2Block(nn.Module):
    def __init__(self, linear_fc: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(D)
        self.attn = nn.Module()
        self.attn.c_attn = Conv1D(3 * D, D)
        self.attn.c_proj = Conv1D(D, D)
        self.ln_2 = nn.LayerNorm(D)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(D, 4 * D) if linear_fc else Conv1D(4 * D, D)
        self.mlp.c_proj = Conv1D(D, 4 * D)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(D, dim=2)
        q, k, v = (z.view(b, t, HEADS, D // HEADS).transpose(1, 2) for z in (q, k, v))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn.c_proj(y.transpose(1, 2).reshape(b, t, D))
        h = nn.functional.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.mlp.c_proj(h)


class GPT2(nn.Module):
    def __init__(self, linear_fc: bool = False):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, D)
        self.wpe = nn.Embedding(SEQ, D)
        self.h = nn.ModuleList(GPT2Block(linear_fc) for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(D)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # lm_head tied to wte


def init_gpt2(model: GPT2) -> None:
    """transformers' GPT2PreTrainedModel._init_weights, as in the reference code."""
    for module in model.modules():
        if isinstance(module, Conv1D):  # the missed copy's nn.Linear c_fc is not handled
            module.weight.data.normal_(0.0, STD)
            module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, STD)
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            p.data.normal_(0.0, STD / math.sqrt(2 * N_LAYER))


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class RowParallelLinear(nn.Linear):
    """A tensor-parallel style subclass (here on one device): still an nn.Linear."""


class LlamaBlock(nn.Module):
    def __init__(self, parallel_down: bool):
        super().__init__()
        inter = 88
        self.input_layernorm = RMSNorm(D)
        self.self_attn = nn.Module()
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self.self_attn, name, nn.Linear(D, D, bias=False))
        self.post_attention_layernorm = RMSNorm(D)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(D, inter, bias=False)
        self.mlp.up_proj = nn.Linear(D, inter, bias=False)
        self.mlp.down_proj = (RowParallelLinear if parallel_down else nn.Linear)(inter, D, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        h = self.input_layernorm(x)
        q, k, v = (getattr(self.self_attn, n)(h).view(b, t, HEADS, D // HEADS).transpose(1, 2)
                   for n in ("q_proj", "k_proj", "v_proj"))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.self_attn.o_proj(y.transpose(1, 2).reshape(b, t, D))
        h = self.post_attention_layernorm(x)
        return x + self.mlp.down_proj(nn.functional.silu(self.mlp.gate_proj(h)) * self.mlp.up_proj(h))


class Llama(nn.Module):
    def __init__(self, parallel_down: bool = False):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(LlamaBlock(parallel_down) for _ in range(N_LAYER))
        self.norm = RMSNorm(D)
        self.lm_head = nn.Linear(D, VOCAB, bias=False)

    def forward(self, ids):
        x = self.embed_tokens(ids)
        for block in self.layers:
            x = block(x)
        return self.lm_head(self.norm(x))


def init_llama(model: Llama, exact_type: bool) -> None:
    """transformers' LlamaPreTrainedModel._init_weights; the missed copy tests the exact type."""
    for module in model.modules():
        linear = type(module) is nn.Linear if exact_type else isinstance(module, nn.Linear)
        if linear:
            module.weight.data.normal_(0.0, STD)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, STD)


def export(model: nn.Module, path: Path, dynamo: bool) -> None:
    ids = torch.zeros(1, SEQ, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (ids,), str(path), dynamo=True, external_data=False, verbose=False)
        else:
            torch.onnx.export(model, (ids,), str(path), dynamo=False, opset_version=17)
    print(f"  {path.name}: {path.stat().st_size // 1024} KiB", file=sys.stderr)


def missed(model: nn.Module, kind: type) -> dict[str, float]:
    """Weights of the module type the init function did not reach, with torch's std."""
    return {f"{name}.weight": float(m.weight.std()) for name, m in model.named_modules() if type(m) is kind}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    expected = {}
    builds = {
        "gpt2": lambda: (GPT2(), init_gpt2, None),
        "gpt2_missed": lambda: (GPT2(linear_fc=True), init_gpt2, nn.Linear),
        "llama": lambda: (Llama(), lambda m: init_llama(m, exact_type=False), None),
        "llama_missed": lambda: (Llama(parallel_down=True), lambda m: init_llama(m, exact_type=True),
                                 RowParallelLinear),
    }
    for name, build in builds.items():
        torch.manual_seed(sum(map(ord, name)))
        model, init, missed_kind = build()
        init(model)
        model.eval()
        expected[name] = {
            "missed": missed(model, missed_kind) if missed_kind else {},
            "stds": {n: float(p.std()) for n, p in model.named_parameters() if p.dim() == 2},
        }
        for exporter, dynamo in (("legacy", False), ("dynamo", True)):
            export(model, OUT / f"{name}.{exporter}.onnx", dynamo)
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
