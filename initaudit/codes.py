"""Rule codes: stable identifiers, each with a page (``initaudit rules CODE``).

Families: IA0xx the model file itself, IA1xx variance against the target, IA2xx pathologies,
IA3xx structure, IA4xx trained-model review, IA5xx the model's own init policy, IA6xx what changed
between two models (``initaudit diff``), IA9xx information.
Codes are never renumbered or reused.
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
    Rule("IA002", "weights-not-stored", "fail",
         "A weight slot (Conv, ConvTranspose, Gemm/MatMul B, LSTM/GRU/RNN W and R, …) reads a graph input: the "
         "file holds no values for that weight.",
         "`torch.onnx.export(..., export_params=False)` turns every parameter into a graph input; such a model "
         "audits as nothing at all unless the empty slots are reported. The layer is listed with its consumer and, "
         "when the input declares a static shape, its layout and fans, but with no statistics and no target. "
         "MatMul, Gemm and Einsum read their data in input 0, so there only another operand counts, declared as a "
         "float or quantized matrix, and only when input 0 is computed in the graph (or, where input 0 is a graph "
         "input too, when the model has other unstored weights). An initializer also listed as a graph input is "
         "an overridable default, stored: it is measured.",
         "conv1.weight, a graph input of shape [6, 3, 5, 5] read by Conv '/conv1/Conv': \"weights not stored in "
         "the file — exported without parameters (export_params=False)?\"",
         "Export with the parameters (`export_params=True`, the default), or audit the model the weights are "
         "loaded into."),
    Rule("IA003", "no-weights-found", "warn",
         "Model level: no weight-carrying layer was found and no weight-like constant was skipped: nothing was "
         "checked.",
         "A report of \"0 weights — 0 ok\" reads as a pass. A graph of activations only, weights in an op "
         "initaudit does not know and does not see, or a file of the wrong model: each deserves a look.",
         "A model made of Relu and Add only: \"no weight-carrying layer found: nothing was checked\".",
         "Check that this is the model meant; `--fail-on warn` makes it fail a CI job."),
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
         "The mean of the weights is far from zero: more than 0.1 σ, and beyond what sampling noise allows. With "
         "`--profile trained` (layers of several output units): beyond 2 σ, or three quarters of the output "
         "units (≥ 8 units of ≥ 16 values) shifted to one side by more than 2× their own σ.",
         "Every scheme draws weights centred on zero; a shifted mean adds a bias to every output and inflates the "
         "second moment even when the variance looks right. A trained layer may lean (classifier heads, "
         "upsamplers: up to 0.95 σ on published models), but not that far: what does is a constant added to the "
         "tensor by a conversion, or int8 codes read with a wrong zero point.",
         "U(0, 1) instead of U(-a, a): mean 0.5, ratio of variance meaningless; trained: uint8 codes meant with "
         "zero point 128 read with 0, every channel moved by its own max|w|.",
         "Check the initializer's bounds; subtract the mean. Trained: check the zero points and the conversion "
         "that wrote the tensor."),
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
    Rule("IA207", "float16-flush", "warn",
         "With `--fp16`: the layer's non-zero values below 2^-25 ≈ 2.98e-8, which become 0 in float16, carry at "
         "least 0.1 % of its Σw² (any profile).",
         "Converting to float16 silently zeroes them; a layer whose scale sits near float16's subnormal range "
         "(below 6.10e-5) also loses precision (TensorRT warns \"Subnormal FP16 values detected\").",
         "A trained layer of 262,144 values with std 1e-7: 31 % of them flush to zero.",
         "Keep this layer in float32 (most converters take a block list), or rescale it together with the next "
         "layer's input so that its values sit in float16's normal range."),
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
    Rule("IA501", "breaks-model-policy", "fail",
         "Most layers of the model share one init (a fixed std such as N(0, 0.02), or one fan-based scheme) and "
         "this layer's variance is not consistent with it within sampling noise.",
         "A custom `_init_weights` that handles nn.Linear but not nn.Conv1d, or an `apply()` that never reaches a "
         "module created later, leaves one layer at the framework's default among layers that all follow the "
         "authors' rule; against Xavier every layer looks wrong and the real defect is hidden.",
         "GPT-2 style model, every weight N(0, 0.02) and residual projections 0.02/√8, except h.2.mlp.c_fc: "
         "\"matches torch_default (std 0.102); the other 12 layers match std 0.02 (4) or std 0.00707 (8)\".",
         "Make the init function reach that layer (check its isinstance tests and where it is applied), or set "
         "the layer's own target in a [[tool.initaudit.layers]] rule if it is meant to differ."),
    Rule("IA502", "ignored-by-config", "info",
         "A [[tool.initaudit.layers]] rule with `ignore = \"reason\"` covers this layer: it is listed with its "
         "statistics and the reason, and held to no target.",
         "Some layers are deliberately initialized outside any scheme (a tied output head, a zero-init gate); "
         "ignoring a rule code would switch the check off for every layer.",
         "[[tool.initaudit.layers]] match = \"*lm_head*\", ignore = \"tied to the token embedding\".",
         "Nothing; remove the rule when the layer should be checked again."),
    Rule("IA503", "config-rule-unused", "info",
         "A [[tool.initaudit.layers]] rule matched no layer of any audited model.",
         "A glob that matches nothing usually means a renamed layer or a typo: the policy it states is not applied.",
         "match = \"*.c_proj.wieght\".",
         "Fix the glob (it is tried on tensor names, node names and the exporter's module paths), or remove it."),
    Rule("IA401", "never-trained-layer", "fail",
         "With `--profile trained`, on layers of at least 4096 values and 8 output units: the layer is still a fresh "
         "i.i.d. draw of a known init scheme: the norms of its output units and of its input units spread as "
         "sampling allows (|z| ≤ 4 on the unit-norm dispersion), its values fit an init "
         "family (uniform, normal, truncated normal) and its variance equals a scheme's (PyTorch's default "
         "U(±1/√fan_in), Xavier/Glorot, He, LeCun, N(0, 0.02)) within sampling noise, and its largest singular "
         "value stays within the Marchenko–Pastur edge of a fresh draw (a Tracy–Widom margin above it).",
         "A layer that was never loaded (`load_state_dict(strict=False)` with a renamed key, a head resized by "
         "`ignore_mismatched_sizes=True`) or never trained (frozen, no gradient path) outputs noise; the model "
         "still runs, so nothing else catches it. Training gives units different norms (D ≫ 1); a fresh draw "
         "cannot (D ≈ 1). A light fine-tune that leaves the norms alone adds a low-rank part, which lifts the "
         "largest singular value out of the bulk: such a layer was trained and is not flagged.",
         "decoder.conv3.weight [64, 128, 3, 3]: D = 0.98 over 64 units (z = -0.1, p = 0.92), uniform values "
         "(excess kurtosis -1.20), variance matches PyTorch's default U(±1/√fan_in).",
         "Check the checkpoint's keys against the model's (`missing_keys` of `load_state_dict`), that the layer "
         "is trainable, and re-export from the trained checkpoint."),
    Rule("IA402", "dead-units", "warn",
         "With `--profile trained`: output units (Conv output channels, Gemm/MatMul output rows or columns, "
         "recurrent gate rows; ConvTranspose per group) whose norm is zero or below 1e-3 × the layer's median unit "
         "norm: warn when at least 10 % of the units are exactly zero, info otherwise (fewer, or units that "
         "decayed to a tiny non-zero norm, as weight decay leaves units that stopped learning).",
         "A dead unit passes nothing: wasted compute, and often the sign of dying ReLUs or a BatchNorm γ driven to "
         "0 (channel pruning by Network Slimming leaves such channels on purpose).",
         "conv2.weight [64, 32, 3, 3]: 16 of 64 output units (25 %) are dead (all exactly zero), first: 0, 4, 8, 12.",
         "If the zero channels are intended pruning, remove them from the architecture; otherwise check the "
         "training (learning rate, ReLU dying, weight decay on γ)."),
    Rule("IA403", "scale-outlier", "warn",
         "With `--profile trained`: the layer's scale rms·√fan_in is far out of line with comparable layers "
         "of the same model (same op, kernel and depthwise-ness; at least 5 of them): robust z > 3.5 "
         "(Iglewicz–Hoaglin modified z on log scale) and at least 100× from their median.",
         "One layer scaled 100× its peers amplifies or kills the signal it carries, and its range sets a "
         "quantization scale nothing else in the model needs.",
         "One of 40 3×3 convs with scale 150 where the others sit between 0.5 and 2.",
         "Compare with the checkpoint before export (a folding or unit conversion gone wrong); if intended, "
         "keep this layer in higher precision when quantizing."),
    Rule("IA404", "int8-hostile-outlier", "warn",
         "With `--profile trained`: a single value so far beyond the rms of the layer's other values that "
         "per-tensor int8 would keep them at an estimated SQNR below -6 dB (max|w| > 883× their rms): the "
         "quantization step is several times the typical weight.",
         "Per-tensor int8 spends one scale on the whole tensor: one huge value sets it and rounds the rest of the "
         "layer to a few levels or zero (ONNX Runtime's qdq_loss_debug measures the same SQNR).",
         "A conv with rms 0.05 and one value of 1e5.",
         "Quantize this layer per channel or keep it in float; check that value in the checkpoint."),
    Rule("IA405", "profile-choice", "info",
         "Model level: with `--profile auto`, which profile was chosen and why; with `--profile init`, a hint "
         "when most layers' values fit no init family (the model looks trained).",
         "A trained model held to Xavier bands fails nearly every layer; a fresh export reviewed as trained "
         "escapes its init target. `auto` counts the layers whose output or input unit norms spread far more "
         "(or less) than an i.i.d. draw allows (|z| > 5), or whose values fit no init family, and calls the "
         "model trained when they are at least half of the testable layers.",
         "auto: trained, 46 of 46 testable layers show structure (unit-norm dispersion |z| > 5, or values that "
         "fit no init family).",
         "Nothing to fix: pass `--profile init` or `--profile trained` explicitly to override."),
    Rule("IA601", "quantization-damage", "fail",
         "`initaudit diff`: B holds a layer at lower precision than A (int8, 4-bit, float16…) and its values, as "
         "the consumer sees them (dequantized), are further from A's than that precision allows: the SQNR of B "
         "against A, of the whole layer or of its worst output unit (among those of at least 0.01× the median unit "
         "norm), is below 6.02 dB × the storage's bits − "
         "26 dB (int8: 22.2 dB, 4-bit: 6 dB, float16: 40.2 dB; never below 6 dB), or B holds NaN/Inf where A "
         "holds numbers.",
         "A healthy int8 per-channel weight keeps about 40 dB, 4-bit blocks of 32 about 20 dB. A wrong scale, a "
         "swapped zero point or one outlier channel that stretches a per-tensor scale until the other channels "
         "round to a few codes costs accuracy that only an evaluation run would show, and the per-layer figure "
         "points at the layer. The worst unit counts on its own: a crushed channel is averaged away in the "
         "layer's figure.",
         "fc1.weight → fc1.weight_quantized [120, 400] int8 per tensor: SQNR 37.1 dB, but output unit 17 at "
         "4.3 dB (its values round to 3 codes: unit 5 is 50× larger).",
         "Quantize that layer per channel, exclude it (`nodes_to_exclude`), clip the outlier channel, or check "
         "the scale and zero point the quantizer wrote."),
    Rule("IA602", "unchanged-layer", "warn",
         "`initaudit diff`: a layer is bit-identical in A and B while most of its peers (the matched layers stored "
         "at the same precision on both sides, at least 3 of them) changed.",
         "After a fine-tune or a LoRA merge, a layer left exactly as it was is frozen, was never merged, or was "
         "loaded from the base checkpoint by mistake. Layers a quantizer leaves in float are compared with each "
         "other, not with the quantized ones.",
         "encoder.layers.3.fc2.weight: identical in both models, while 11 of 12 peers changed (median relative "
         "change 3.1 %).",
         "Check that the layer was trainable, that the adapter was merged into it, and that the fine-tuned "
         "checkpoint was the one exported."),
    Rule("IA603", "outlier-change", "warn",
         "`initaudit diff`: a layer changed far more than its peers: its relative change ‖B − A‖ / ‖A‖ is more "
         "than 10× the median of the peers that changed (at least 3 of them) and above 5 %.",
         "A fine-tune moves layers by similar relative amounts; one that moved ten times more was re-initialized, "
         "got another learning rate, or was overwritten by another checkpoint's tensor. Between two exports, it "
         "is a different layer.",
         "head.weight: relative change 2.4 (240 %), 38× the median of 15 peers (6.3 %).",
         "Check the fine-tune's parameter groups and the checkpoint loading of that layer."),
    Rule("IA604", "only-in-a", "warn",
         "`initaudit diff`: a weight of A has no counterpart in B (by name, by place in the graph or by value).",
         "A layer removed between two exports or versions changes the model; a quantizer or optimizer that "
         "dropped a layer changes it too.",
         "classifier.1.weight [1000, 1280] read by Gemm: not found in B.",
         "If the removal is meant, nothing; otherwise compare the export settings of the two models."),
    Rule("IA605", "only-in-b", "warn",
         "`initaudit diff`: a weight of B has no counterpart in A.",
         "A layer added between two exports or versions changes the model: a new head, an adapter left unmerged.",
         "lora_B.weight [768, 8] read by MatMul: not found in A.",
         "If the addition is meant, nothing; otherwise check what added it."),
    Rule("IA606", "not-compared", "warn",
         "`initaudit diff`: a matched layer whose values could not be compared: its shape changed, its two "
         "layouts cannot be put in one axis order, it is stored in a different axis order and larger than 4M "
         "values, its weights are not in the file, or B holds integer codes whose scale was not found.",
         "A pair that is matched but not compared would otherwise read as \"no change\".",
         "embed.weight [32000, 512] → [32008, 512]: shape changed, values not compared.",
         "Compare that layer by hand, or audit each model on its own."),
    Rule("IA607", "batchnorm-folded", "info",
         "`initaudit diff`: the layer is followed by a BatchNormalization on one side only: the other side holds "
         "it folded in, so the side with the BatchNorm is compared with γ/√(var + ε) applied per output unit.",
         "Exporters and optimizers fold BatchNorm into the preceding Conv; the raw weights then differ by the "
         "BatchNorm's scale, and a plain comparison would call every such layer changed.",
         "conv1.weight [64, 3, 7, 7]: A's BatchNorm 'bn1' is folded into B's weight; compared with it applied.",
         "Nothing: this says how the layer was compared."),
    Rule("IA901", "embedding-table", "info",
         "A table read by Gather (an embedding): by convention not initialized from fans.",
         "PyTorch draws N(0, 1), Keras U(±0.05), Flax N(0, 1/dim): no Xavier target applies.",
         "nn.Embedding(1000, 64) exported as Gather(weight[1000, 64], ids).",
         "Nothing, unless the pathologies (IA2xx) fire."),
)}

