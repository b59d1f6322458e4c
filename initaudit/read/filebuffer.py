"""A read-only, indexable view of a file read with ``pread`` through a small window.

The protobuf walk in ``protoscan`` reads a few bytes at many places of a large
model file.  Through ``mmap`` each touched place maps the page-cache folio
around it, and current kernels map large folios (up to 2 MiB) whole: walking a
model of many inline tensors then maps most of the file and the peak RSS grows
with it.  Reading those few bytes with ``pread`` keeps memory at one window.
"""
from __future__ import annotations

import os

from initaudit.errors import InitauditError

WINDOW = 64 << 10


class FileBuffer:
    """``buf[i]`` and ``buf[a:b]`` of an open file, as ``bytes`` would give them."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size
        self._start, self._data = 0, b""

    def __len__(self) -> int:
        return self.size

    def _read(self, start: int, stop: int) -> bytes:
        data = os.pread(self.fd, stop - start, start)
        if len(data) != stop - start:
            raise InitauditError("file changed or ended while it was read")
        return data

    def __getitem__(self, key: int | slice) -> int | bytes:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.size)
            if step != 1:
                raise ValueError("FileBuffer slices have step 1")
            if stop <= start:
                return b""
            if self._start <= start and stop <= self._start + len(self._data):
                return self._data[start - self._start:stop - self._start]
            return self._read(start, stop)
        if key < 0:
            key += self.size
        if not 0 <= key < self.size:
            raise IndexError("FileBuffer index out of range")
        offset = key - self._start
        if not 0 <= offset < len(self._data):
            self._start = key
            self._data = self._read(key, min(key + WINDOW, self.size))
            offset = 0
        return self._data[offset]
