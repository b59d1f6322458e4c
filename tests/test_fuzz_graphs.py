"""Structure-aware fuzzing: valid-but-strange graphs (tests/graphgen.py) never end in a traceback or a hang.

The suite runs a fixed, derandomized sample; ``INITAUDIT_FUZZ_EXAMPLES=N`` explores N fresh ones, and
``scripts/fuzz_graphs.py`` runs long hunts that log every failure instead of stopping at the first.
"""
from __future__ import annotations

import os

from graphgen import audit_strange, strange_models
from hypothesis import HealthCheck, Phase, given, settings

_EXAMPLES = os.environ.get("INITAUDIT_FUZZ_EXAMPLES")


@settings(max_examples=int(_EXAMPLES or 80), derandomize=_EXAMPLES is None, deadline=None, database=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: a failure is replayed by seed
          suppress_health_check=list(HealthCheck))
@given(model=strange_models())
def test_strange_graphs_are_audited_or_refused(tmp_path_factory, model):
    assert audit_strange(model, tmp_path_factory.mktemp("g")) in ("ok", "refused")


def test_found_by_fuzzing_a_vector_weight_followed_by_a_split(tmp_path):
    """A MatMul with a 1-D weight whose output is split in parts: once a ZeroDivisionError (fan_out 1 // 3)."""
    import numpy as np
    from modelkit import model, save, tensor
    from onnx import helper

    import initaudit

    m = model([helper.make_node("MatMul", ["x", "w"], ["h"]),
               helper.make_node("Split", ["h"], ["a", "b", "c"], axis=-1)],
              [tensor("w", np.random.default_rng(0).normal(0, 0.3, 6).astype(np.float32))])
    (layer,) = initaudit.audit(save(m, tmp_path)).models[0].layers
    assert (layer.fan_in, layer.fan_out) == (6, 1) and layer.parts == ()


def test_found_by_fuzzing_attention_qkv_sizes_of_the_wrong_length(tmp_path):
    """com.microsoft Attention with qkv_hidden_sizes of two entries: once an IndexError."""
    import numpy as np
    from modelkit import model, save, tensor
    from onnx import helper

    import initaudit

    m = model([helper.make_node("Attention", ["x", "w", "b"], ["y"], domain="com.microsoft", num_heads=1,
                                qkv_hidden_sizes=[4, 8])],
              [tensor("w", np.random.default_rng(0).normal(0, 0.3, (6, 12)).astype(np.float32)),
               tensor("b", np.zeros(12, np.float32))], extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    (layer,) = initaudit.audit(save(m, tmp_path)).models[0].layers
    assert [f.code for f in layer.findings][:1] == ["IA301"] and "three entries" in layer.findings[0].message
