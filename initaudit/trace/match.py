"""Which weight of model B is which weight of model A (``initaudit diff``).

Three passes, each over what the earlier ones left: the tensor name (also with a quantizer's suffix
taken off: ``conv1.weight_quantized`` is ``conv1.weight``); the place in the graph, aligning the two
sequences of layers by what each is (its role and its shape in the consumer's axis order), so an
exporter's renaming (``onnx::MatMul_93`` → ``val_86``) and reordered initializers do not matter; and,
among same-shaped layers still unpaired (or paired by place with values that do not correlate), the
correlation of their values.  A name left on both
sides with different shapes is paired last: one layer, resized.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Suffixes quantizers add to a weight's name (onnxruntime: ``_quantized``, ``_Transposed_quantized`` for a
#: Gemm weight its dynamic quantization stores transposed, ``_Transposed`` for a recurrent weight it leaves in
#: float; MatMulNBits: ``_Q4``).
QUANTIZER_SUFFIX = re.compile(r"((_Transposed)?_quantized|_Transposed|_q[248]|_u?int[248]|_fp16|_bf16)$",
                             re.IGNORECASE)
#: A value-based match needs at least this correlation between the candidates' first values.
MIN_CORRELATION = 0.5
#: Candidate pairs whose values are compared, at most (each reads a sample of both).
MAX_CANDIDATES = 256


@dataclass(frozen=True)
class LayerKey:
    """What matching knows of one weight."""

    name: str
    kind: str                    # the consumer's role kind ("layer", "embedding"), "" when unknown
    shape: tuple[int, ...]       # in the consumer's canonical axis order (stored shape when unknown)
    position: int                # the consumer's place in the graph's node order


@dataclass(frozen=True)
class Matching:
    pairs: tuple[tuple[int, int, str], ...]   # (index in A, index in B, "name" | "position" | "values")
    only_a: tuple[int, ...]
    only_b: tuple[int, ...]


def base_name(name: str) -> str:
    return QUANTIZER_SUFFIX.sub("", name)


def match_layers(a: Sequence[LayerKey], b: Sequence[LayerKey],
                 correlate: Callable[[int, int], float | None] | None = None) -> Matching:
    """Pairs of A's and B's layers; ``correlate(i, j)`` (optional) measures a candidate pair's values."""
    pairs: list[tuple[int, int, str]] = []
    free_a, free_b = set(range(len(a))), set(range(len(b)))

    def take(i: int, j: int, how: str) -> None:
        pairs.append((i, j, how))
        free_a.discard(i)
        free_b.discard(j)

    def by_name(key: Callable[[LayerKey], str], same_shape: bool) -> None:
        names: dict[str, list[int]] = {}
        for j in sorted(free_b):
            names.setdefault(key(b[j]), []).append(j)
        for i in sorted(free_a):
            found = names.get(key(a[i]), [])
            if len(found) == 1 and found[0] in free_b and (
                    not same_shape or (a[i].kind, a[i].shape) == (b[found[0]].kind, b[found[0]].shape)):
                take(i, found[0], "name")

    by_name(lambda k: k.name, True)
    by_name(lambda k: base_name(k.name), True)
    rest_a = sorted(free_a, key=lambda i: a[i].position)
    rest_b = sorted(free_b, key=lambda j: b[j].position)
    signature = [(a[i].kind, a[i].shape) for i in rest_a], [(b[j].kind, b[j].shape) for j in rest_b]
    for block in difflib.SequenceMatcher(None, *signature, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            take(rest_a[block.a + k], rest_b[block.b + k], "position")
    if correlate is not None:
        # a positional pair whose values do not correlate may be two same-shaped layers in another order:
        # its members compete in the value pass, and are paired back by place if nothing better is found
        weak = []
        for i, j, how in list(pairs):
            c = correlate(i, j) if how == "position" else None
            if c is not None and c < MIN_CORRELATION:
                weak.append((i, j))
                pairs.remove((i, j, how))
                free_a.add(i)
                free_b.add(j)
        candidates = [(i, j) for i in sorted(free_a) for j in sorted(free_b)
                      if (a[i].kind, a[i].shape) == (b[j].kind, b[j].shape)][:MAX_CANDIDATES]
        scored = [(c, i, j) for i, j in candidates if (c := correlate(i, j)) is not None and c >= MIN_CORRELATION]
        for _, i, j in sorted(scored, reverse=True):
            if i in free_a and j in free_b:
                take(i, j, "values")
        for i, j in weak:
            if i in free_a and j in free_b:
                take(i, j, "position")
    by_name(lambda k: k.name, False)  # the same tensor name with another shape: a layer that was resized
    return Matching(tuple(sorted(pairs)), tuple(sorted(free_a)), tuple(sorted(free_b)))
