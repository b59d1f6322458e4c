#!/usr/bin/env python3
"""The floor any Python tool faces on an external-data model: import onnx and numpy, parse the
graph without its data, and one float32 sum-of-squares pass over the memory-mapped data file(s).

    python benchmarks/floor.py MODEL.onnx
"""
import mmap
import sys
from pathlib import Path

import numpy as np
import onnx


def main(path: str) -> None:
    model = onnx.load(path, load_external_data=False)
    files = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    total = 0.0
    for name in sorted(files):
        with open(Path(path).parent / name, "rb") as handle, \
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            values = np.frombuffer(mapped, np.float32)
            total += float(np.dot(values, values))
            del values
    print(total)


if __name__ == "__main__":
    main(sys.argv[1])
