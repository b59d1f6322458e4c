"""What a report was made from and how: the SHA-256 and size of each model file and of every external
data file it reads, the tool's version, the effective options, the config file, the command, the time.

A sign-off names exactly what was reviewed; these are the facts a colleague needs to check that the
file in front of them is that one.  Hashing reads every byte once more (page-cached after the audit;
SHA-256 ran at 0.55 GB/s on this project's 2-core test machine, files hashed in parallel threads);
external data files are opened through the loader, with its checks (inside the model's folder, no
symlink or second hard link), never by a path of their own.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import shlex
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np
import onnx
from onnx import TensorProto

from initaudit.errors import InitauditError
from initaudit.read.loader import load_model
from initaudit.read.tensors import FilePayload
from initaudit.report.model import FileDigest, Provenance, Report
from initaudit.version import __version__

CHUNK = 8 << 20


def file_sha256(fd: int) -> tuple[int, str]:
    """(size, hex SHA-256) of an open file, read with ``pread`` in chunks (bounded memory)."""
    digest, offset = hashlib.sha256(), 0
    while chunk := os.pread(fd, CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return offset, digest.hexdigest()


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for graph in attr.graphs:
            yield from _graph_tensors(graph)


def _tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def model_files(path: str | os.PathLike[str]) -> tuple[FileDigest, ...]:
    """The model file, then each external data file it names (once, in the order first named)."""
    with load_model(path) as model:
        assert model.self_fd is not None
        opened = [(str(path), "model", model.self_fd)]
        seen: set[str] = set()
        for tensor in _tensors(model.proto):
            if tensor.data_location != TensorProto.EXTERNAL:
                continue
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if location in seen or location == model.self_marker:
                continue
            seen.add(location)
            payload = model.source(tensor).payload  # opened and checked by the loader
            assert isinstance(payload, FilePayload)
            opened.append((location, "external data", payload.fd))
        # hashlib releases the GIL on large buffers: several files (sharded external data) hash side by side
        with ThreadPoolExecutor(max_workers=max(1, min(len(opened), os.cpu_count() or 1))) as pool:
            digests = list(pool.map(file_sha256, [fd for _, _, fd in opened]))
    return tuple(FileDigest(name, role, size, sha) for (name, role, _), (size, sha) in zip(opened, digests))


def effective_options(options: object) -> dict[str, object]:
    """An ``AuditOptions`` as plain values: tuples as lists, layer rules by their label."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(options):  # type: ignore[arg-type]
        if f.name == "histograms":
            continue
        value = getattr(options, f.name)
        if f.name == "layers":
            value = [getattr(rule, "label", str(rule)) for rule in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def with_provenance(report: Report, options: object | Mapping[str, object] | None = None,
                    argv: Sequence[str] | None = None, config: str | None = None,
                    now: datetime | None = None) -> Report:
    """``report`` with its provenance: each readable model's files hashed, the run described.

    ``options``: the ``AuditOptions`` (or a dict) the audit ran with; ``argv``: the command's arguments.
    """
    models = []
    for model in report.models:
        if model.error is None:
            try:
                model = dataclasses.replace(model, files=model_files(model.path))
            except (InitauditError, OSError):  # changed or gone since the audit: nothing to vouch for
                model = dataclasses.replace(model, files=())
        models.append(model)
    if options is None:
        shown: dict[str, object] = {}
    elif isinstance(options, Mapping):
        shown = dict(options)
    else:
        shown = effective_options(options)
    when = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    provenance = Provenance(
        initaudit=__version__, command="" if argv is None else shlex.join(["initaudit", *argv]), time_utc=when,
        options=shown, config=config,
        versions={"python": platform.python_version(), "numpy": np.__version__, "onnx": onnx.__version__})
    return dataclasses.replace(report, models=tuple(models), provenance=provenance)

