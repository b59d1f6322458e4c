"""A stored tensor's values read back (``initaudit/read/tensors.py``): a range of a payload held in memory."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from initaudit.read.tensors import MemoryPayload, TensorSource


def test_memory_payload_ranges():
    values = np.arange(10, dtype=np.float32)
    source = TensorSource("w", TensorProto.FLOAT, (10,), MemoryPayload(values.tobytes()))
    got = np.concatenate(list(source.iter_values(3, 2, 9)))
    assert np.array_equal(got, values[2:9])
