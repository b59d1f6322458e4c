#!/usr/bin/env python3
"""Regenerate tests/fixtures/torch/: small PyTorch models exported to ONNX, plus torch's own fans.

Needs PyTorch (``pip install torch==2.13.0 onnxscript``); the test suite does not.
Each model is initialized with a known scheme, exported with the TorchScript
("legacy", dynamo=False) exporter and, where it works, the dynamo exporter, and
``<model>.json`` records, per parameter: torch's ``_calculate_fan_in_and_fan_out``,
the connectivity fans derived from the module's attributes, the scheme used, the
vocabulary rule it amounts to (if any) and a fingerprint of its values (sorted
float32 bytes, so a transposed or gate-permuted copy in the ONNX file matches) and
its quantiles (which still match when an exporter folds a fresh BatchNorm into a conv).

    python scripts/make_torch_fixtures.py
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "torch"


QUANTILES = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]


def fingerprint(values: np.ndarray) -> str:
    return hashlib.sha1(np.sort(values.astype(np.float32).ravel()).tobytes()).hexdigest()


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class ResBlock(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


class SeparableGrouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pointwise = nn.Conv2d(16, 32, 1)
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.multiplier = nn.Conv2d(32, 64, 3, groups=32)  # depthwise with depth multiplier 2

    def forward(self, x):
        return self.multiplier(torch.relu(self.grouped(self.pointwise(self.depthwise(x)))))


class Transposed(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1)
        self.up_grouped = nn.ConvTranspose2d(8, 8, 3, groups=2)

    def forward(self, x):
        return self.up_grouped(torch.tanh(self.up(x)))


class Convs1d3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(4, 8, 3)
        self.c3 = nn.Conv3d(2, 4, 3)

    def forward(self, x1, x3):
        return torch.relu(self.c1(x1)).sum() + torch.relu(self.c3(x3)).sum()


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(10, 20, batch_first=True)
        self.gru = nn.GRU(20, 16, batch_first=True)
        self.lstm_default = nn.LSTM(12, 12, batch_first=True)

    def forward(self, x, z):
        y, _ = self.lstm(x)
        y, _ = self.gru(y)
        w, _ = self.lstm_default(z)
        return y.sum() + w.sum()


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, dropout=0.0,
                                                batch_first=True)

    def forward(self, x):
        return self.layer(x)


class EmbeddingHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, ids):
        return self.head(self.embed(ids))


def connectivity(module: nn.Module, name: str, param: torch.Tensor) -> list[int] | None:
    """Fans of the ONNX op's real connectivity, from the module's own attributes."""
    if isinstance(module, nn.ConvTranspose2d | nn.ConvTranspose1d | nn.ConvTranspose3d):
        k = math.prod(module.kernel_size)
        return [module.in_channels // module.groups * k, module.out_channels // module.groups * k]
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        k = math.prod(module.kernel_size)
        return [module.in_channels // module.groups * k, module.out_channels // module.groups * k]
    if isinstance(module, nn.Linear):
        return [module.in_features, module.out_features]
    if isinstance(module, nn.LSTM | nn.GRU):
        h = module.hidden_size
        return [param.shape[1], h]  # per gate: weight_ih [G·H, I] → (I, H); weight_hh → (H, H)
    if isinstance(module, nn.MultiheadAttention) and name == "in_proj_weight":
        return [module.embed_dim, module.embed_dim]  # per q/k/v part
    return None


RULES = {  # scheme → (vocabulary rule, convention under which it holds)
    "torch_default": ("torch_default", "pytorch"),
    "xavier_uniform": ("xavier", "pytorch"),
    "xavier_normal": ("xavier", "pytorch"),
    "kaiming_normal_fan_out": ("he_fan_out", "pytorch"),
    "kaiming_uniform_relu": ("he_fan_in", "pytorch"),
    "normal_1": (None, None),
}


def init_model(model: nn.Module, scheme: str) -> dict[str, str]:
    """Apply ``scheme`` to every weight of rank ≥ 2; returns parameter → scheme."""
    schemes = {}
    for module_name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            if param.dim() < 2:
                continue
            full = f"{module_name}.{pname}" if module_name else pname
            chosen = scheme
            if isinstance(module, nn.Embedding):
                chosen = "normal_1"
            elif scheme == "mixed":
                chosen = "torch_default"
            with torch.no_grad():
                if chosen == "xavier_uniform":
                    nn.init.xavier_uniform_(param)
                elif chosen == "xavier_normal":
                    nn.init.xavier_normal_(param)
                elif chosen == "kaiming_normal_fan_out":
                    nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")
                elif chosen == "kaiming_uniform_relu":
                    nn.init.kaiming_uniform_(param, nonlinearity="relu")
            schemes[full] = chosen
    return schemes


MODELS = {
    # name: (factory, init scheme, example inputs)
    "lenet_default": (LeNet5, "torch_default", lambda: (torch.randn(1, 3, 32, 32),)),
    "resblock_kaiming": (ResBlock, "kaiming_normal_fan_out", lambda: (torch.randn(1, 16, 8, 8),)),
    "separable_xavier": (SeparableGrouped, "xavier_uniform", lambda: (torch.randn(1, 16, 8, 8),)),
    "transposed_default": (Transposed, "torch_default", lambda: (torch.randn(1, 16, 4, 4),)),
    "conv1d3d_kaiming": (Convs1d3d, "kaiming_uniform_relu",
                         lambda: (torch.randn(1, 4, 16), torch.randn(1, 2, 6, 6, 6))),
    "recurrent_xavier": (Recurrent, "xavier_uniform", lambda: (torch.randn(1, 5, 10), torch.randn(1, 5, 12))),
    "encoder_default": (Encoder, "mixed", lambda: (torch.randn(1, 6, 16),)),
    "embedding_xavier": (EmbeddingHead, "xavier_uniform", lambda: (torch.randint(0, 50, (1, 7)),)),
}


def describe(model: nn.Module, schemes: dict[str, str]) -> list[dict]:
    out = []
    for module_name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{pname}" if module_name else pname
            if param.dim() < 2:
                continue
            scheme = schemes.get(full, "torch_default")
            if isinstance(module, nn.LSTM) and module is getattr(model, "lstm_default", None):
                scheme = "torch_default_rnn"
            fi, fo = nn.init._calculate_fan_in_and_fan_out(param)
            rule, convention = RULES.get(scheme, (None, None))
            if scheme == "torch_default_rnn":  # U(±1/√H): 1/(3H) = torch_default when fan_in = H
                rule, convention = "torch_default", "connectivity"
            if isinstance(module, nn.MultiheadAttention) and pname == "in_proj_weight":
                scheme, rule, convention = "xavier_uniform_packed", "xavier", "pytorch"
            if isinstance(module, nn.Embedding):
                rule, convention = None, None
            out.append({
                "param": full, "module": type(module).__name__, "shape": list(param.shape),
                "torch_fans": [fi, fo], "connectivity": connectivity(module, pname, param),
                "scheme": scheme, "rule": rule, "rule_convention": convention,
                "fingerprint": fingerprint(param.detach().numpy()),
                "quantiles": [float(q) for q in np.quantile(param.detach().numpy(), QUANTILES)],
            })
    return out


def export(model: nn.Module, args: tuple, path: Path, dynamo: bool) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dynamo:
                torch.onnx.export(model, args, str(path), dynamo=True, external_data=False, verbose=False)
            else:
                torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17)
        return True
    except Exception as exc:  # record and carry on: not every exporter handles every model
        print(f"  {path.name}: export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
              file=sys.stderr)
        return False


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"torch": torch.__version__, "models": {}}
    for name, (factory, scheme, inputs) in MODELS.items():
        torch.manual_seed(sum(map(ord, name)))
        model = factory().eval()
        schemes = init_model(model, scheme)
        args = inputs()
        files = {}
        for exporter, dynamo in (("legacy", False), ("dynamo", True)):
            path = OUT / f"{name}.{exporter}.onnx"
            if export(model, args, path, dynamo):
                files[exporter] = path.name
        manifest["models"][name] = {"files": files, "params": describe(model, schemes)}
        print(f"{name}: {', '.join(files)}")
    (OUT / "expected.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
