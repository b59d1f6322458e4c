"""Rule codes: stable identifiers, each with a page (``initaudit rules CODE``).

Families: IA0xx the model file itself, IA1xx variance against the target, IA2xx pathologies, IA3xx structure,
IA9xx information.  Codes are never renumbered or reused.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str      # the severity its findings usually carry: fail | warn | info
    summary: str
    why: str
    example: str
    fix: str


RULES: dict[str, Rule] = {r.code: r for r in (
    Rule("IA001", "unreadable-model", "fail",
         "The model file could not be read: missing, truncated, not ONNX, or its external data is refused.",
         "A model that cannot be read cannot be audited; in a batch the other models are still reported, and the "
         "run exits with code 2 so the gap is never silent.",
         "`exported/` holds a model whose upload was cut at 5,000 bytes: 'not a readable ONNX model'.",
         "Re-export or re-upload the file; for refused external data see the Safety section of the README."),
    Rule("IA101", "variance-far-from-target", "fail",
         "The weight variance is outside the fail band around the target (default 0.5×–2×, widened by sampling noise).",
         "A layer whose variance is off by 2× or more scales the signal by √2 or more at every pass; a few such layers "
         "make activations or gradients explode or vanish before training even starts.",
         "fc1.weight [120, 400] holds PyTorch's default init, Var = 1/(3·400) = 8.3e-4, against the Xavier target "
         "2/(400+120) = 3.85e-3: ratio 0.22, fail.",
         "Re-initialize with the suggested call (e.g. `torch.nn.init.xavier_uniform_(layer.weight)`), or multiply the "
         "weights by the suggested factor √(target/var). If the layer is meant to follow another scheme, audit with "
         "`--target he|lecun|auto`."),
    Rule("IA102", "variance-off-target", "warn",
         "The weight variance is outside the ok band (default 0.8×–1.25×) but inside the fail band.",
         "A 25–100 % variance error compounds with depth; it is often a sign of the wrong fan convention or gain.",
         "A depthwise conv initialized with torch's xavier_uniform_ gets fans (9, 288) instead of (9, 9).",
         "Check which fan convention produced the init (`--convention pytorch|keras` shows the framework's own "
         "numbers) and apply the suggested scale."),
    Rule("IA103", "packed-projection", "info",
         "The weight packs several projections (q/k/v, gates) that are used as separate matrices.",
         "Initializing the packed tensor as one matrix counts fan_out once for all parts: a packed Xavier init holds "
         "2/(E+3E) = 1/(2E), half the per-part Xavier variance 1/E (pytorch #166378).",
         "nn.MultiheadAttention in_proj_weight [3E, E] exported as MatMul [E, 3E] and split in three.",
         "Initialize each part on its own (e.g. xavier_uniform_ on each slice), or accept the factor of two."),
    Rule("IA104", "signal-drift", "warn",
         "Across the model, the estimated activation variance grows or shrinks by more than the allowed factor.",
         "Per-layer errors multiply along the path from input to output: ten layers each 1.2× off make a 6× drift.",
         "A 12-layer MLP whose layers are each at 0.7× of He: the forward variance shrinks by 0.7¹² ≈ 0.014.",
         "Fix the layers with the largest ratios first; the per-layer table lists them."),
    Rule("IA201", "non-finite-weights", "fail",
         "The weight holds NaN or ±Inf values.",
         "One non-finite weight makes every output it touches non-finite.",
         "A layer saved after a diverged step: 12 NaN among 4,096 values.",
         "Re-export from a healthy checkpoint; find where the NaNs were introduced."),
    Rule("IA202", "all-zero-weights", "fail",
         "Every value of the weight is zero.",
         "A zero weight matrix passes no signal and, with symmetric gradients, its units never differentiate.",
         "`nn.init.zeros_(conv.weight)` left in by mistake, or an init that never ran.",
         "Initialize the layer (see IA101's fix); zeros are only right for biases and some residual-branch outputs."),
    Rule("IA203", "constant-weights", "fail",
         "Every value of the weight is the same non-zero number.",
         "Identical weights make all units of the layer compute the same thing: the symmetry is never broken.",
         "`nn.init.constant_(w, 0.01)`.",
         "Use a random initializer."),
    Rule("IA204", "mean-shift", "warn",
         "The mean of the weights is far from zero: more than 0.1 σ, and beyond what sampling noise allows.",
         "Every scheme draws weights centred on zero; a shifted mean adds a bias to every output and inflates the "
         "second moment even when the variance looks right.",
         "U(0, 1) instead of U(-a, a): mean 0.5, ratio of variance meaningless.",
         "Check the initializer's bounds; subtract the mean."),
    Rule("IA205", "mostly-zero-weights", "warn",
         "At least half of the weights are exactly zero (but not all).",
         "A sparse or pruned layer, or a partially overwritten one: its variance understates the scale of the rest.",
         "A layer whose first half of output channels were zeroed.",
         "Confirm the sparsity is intended."),
    Rule("IA206", "float16-overflow", "warn",
         "Values exceed the float16 range (|w| > 65504) while the model is bound for float16.",
         "They become ±Inf when the model is converted.",
         "A trained layer with a weight of 1e5.",
         "Clip or rescale before converting."),
    Rule("IA301", "unsupported-consumer", "warn",
         "A floating-point weight is consumed by an op whose weight layout initaudit does not know.",
         "Its fans cannot be stated, so it cannot be checked; it is listed, with its statistics, rather than dropped.",
         "A custom-domain op `mydomain.FancyConv` reading a [64, 3, 3, 3] initializer.",
         "Open an issue with the op's specification; meanwhile use `initaudit fans SHAPE --layout ...`."),
    Rule("IA302", "shared-weight-conflict", "warn",
         "One tensor is consumed by several nodes that see it with different layouts or fans.",
         "Tied weights (e.g. an embedding reused as the output projection) can be right for one use only.",
         "A [512, 1000] tensor used by Gather (embedding) and by a MatMul with fans (512, 1000).",
         "Decide which use the init should serve; the report checks the first consumer."),
    Rule("IA303", "layout-not-followed", "info",
         "Between the stored tensor and its consumer, a Reshape merges or splits axes, or a shape is computed at run time.",
         "The fans are counted on the tensor as the consumer receives it, but which stored axis is which cannot be "
         "shown, and per-part or per-axis statistics may be unavailable.",
         "tf2onnx's depthwise kernel [kh, kw, C, m] → Reshape [kh, kw, 1, C·m] → Transpose → Conv.",
         "Nothing to fix in the model; read the layout column as the consumer's."),
    Rule("IA304", "unreadable-quantization", "warn",
         "A quantized weight's scale or zero point could not be read as a constant.",
         "Without them the dequantized values, hence the variance, are unknown.",
         "DequantizeLinear whose scale comes from a computation.",
         "Constant-fold the model (e.g. onnxruntime's optimizer) before auditing."),
    Rule("IA305", "integer-units", "info",
         "An integer op (ConvInteger, MatMulInteger) carries no weight scale: statistics are in integer units and "
         "the layer is not held to a target.",
         "The scale is applied by a later Mul together with the input's run-time scale.",
         "ConvInteger from onnxruntime's dynamic quantizer.",
         "Audit the float model before quantization."),
    Rule("IA901", "embedding-table", "info",
         "A table read by Gather (an embedding): by convention not initialized from fans.",
         "PyTorch draws N(0, 1), Keras U(±0.05), Flax N(0, 1/dim): no Xavier target applies.",
         "nn.Embedding(1000, 64) exported as Gather(weight[1000, 64], ids).",
         "Nothing, unless the pathologies (IA2xx) fire."),
)}

