"""Reading a safetensors header with bounded cost, without torch.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON (tensor name -> dtype, shape and
byte range, plus an optional ``__metadata__`` map of strings), then the raw tensor bytes. :func:`read_header` reads
and checks only that header: the file must be a regular file (a pipe, folder or device named ``*.lnf`` would
otherwise block or fail oddly), the header at most :data:`MAX_HEADER_BYTES`, the JSON a map of well-formed entries
whose byte ranges tile the rest of the file exactly. Every problem is a :class:`HeaderError` (a ``ValueError``)
whose message says what is wrong, without the file name (callers add it).

Used by :mod:`lnf_core.checkpoint` before any tensor is read or any model is built, and by the app's model list
(which must not import torch to show it).
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from typing import IO, Any

#: Largest header accepted. An LNF Studio checkpoint's header is a few KiB (metadata + ~100 tensor entries).
MAX_HEADER_BYTES = 16 * 1024 * 1024
#: Bytes per element of each safetensors dtype.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
MAX_DIMS = 8


class HeaderError(ValueError):
    """The file is not a readable safetensors file; the message says why (without the file name)."""


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # byte range relative to the start of the data section
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]
    data_start: int  # file offset of the data section (8 + header length)
    file_size: int


def open_regular_file(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open ``path`` for reading only if it is a regular file (symlinks followed).

    Opened non-blocking and checked with ``fstat`` on the open descriptor, so a FIFO never blocks the caller
    and nothing can be swapped in between the check and the read. Raises ``OSError`` (missing, unreadable)
    or :class:`HeaderError` (a folder, pipe, socket or device).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(os.fspath(path), flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a folder" if stat.S_ISDIR(mode) else "a pipe (FIFO)" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                    else "not a regular file")
            raise HeaderError(f"it is {kind}, not a file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_json(text: bytes | str, what: str) -> Any:
    """``json.loads`` whose every failure (bad JSON, bad UTF-8, nesting too deep, a 5000-digit number) is a
    :class:`HeaderError` naming ``what``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise HeaderError(f"its {what} is nested too deeply") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise HeaderError(f"its {what} is not valid JSON ({str(exc)[:200]})") from None


def read_header(path: str | os.PathLike[str], max_bytes: int = MAX_HEADER_BYTES) -> SafetensorsHeader:
    """Read and check the header of a safetensors file (see the module doc); the tensor bytes are not read."""
    with open_regular_file(path) as fh:
        return read_header_from(fh, os.fstat(fh.fileno()).st_size, max_bytes)


def read_header_from(fh: IO[bytes], file_size: int, max_bytes: int = MAX_HEADER_BYTES) -> SafetensorsHeader:
    raw = fh.read(8)
    if len(raw) != 8:
        raise HeaderError(f"it is too short to be a safetensors file ({file_size} bytes)")
    size = int.from_bytes(raw, "little")
    if size < 2 or size > file_size - 8:
        raise HeaderError(f"it is truncated or not a safetensors file (its first 8 bytes announce a header of "
                          f"{size} bytes; the file has {file_size})")
    if size > max_bytes:
        raise HeaderError(f"its header of {size} bytes is larger than the {max_bytes} bytes a checkpoint may have")
    text = fh.read(size)
    if len(text) != size:
        raise HeaderError("it is truncated (the header ends early)")
    header = parse_json(text, "safetensors header")
    if not isinstance(header, dict):
        raise HeaderError(f"its safetensors header is a JSON {type(header).__name__}, not an object")
    metadata = header.get("__metadata__", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in
                                                 metadata.items()):
        raise HeaderError("its safetensors metadata is not a map of strings")
    data_size = file_size - 8 - size
    tensors: dict[str, TensorEntry] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise HeaderError(f"tensor {name[:80]!r}: its header entry is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise HeaderError(f"tensor {name[:80]!r}: unknown dtype {str(dtype)[:20]!r}")
        if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                or not all(_int(d) and 0 <= d <= 2**40 for d in shape)):
            raise HeaderError(f"tensor {name[:80]!r}: malformed shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise HeaderError(f"tensor {name[:80]!r}: its byte range lies outside the file (truncated?)")
        item = TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])
        if item.numel * DTYPE_SIZES[dtype] != item.end - item.begin:
            raise HeaderError(f"tensor {name[:80]!r}: its byte range does not match its shape and dtype")
        tensors[name] = item
    # The byte ranges must tile the data section exactly (what safetensors itself requires).
    position = 0
    for item in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if item.begin != position:
            raise HeaderError("its tensor byte ranges overlap or leave gaps (damaged file)")
        position = item.end
    if position != data_size:
        raise HeaderError(f"it is truncated or has trailing bytes (the tensors take {position} bytes, the file "
                          f"holds {data_size} after the header)")
    return SafetensorsHeader(tensors, dict(metadata), 8 + size, file_size)
