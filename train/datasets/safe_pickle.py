"""A restricted unpickler for the Boulanger-Lewandowski music pickles.

Those files are plain ``dict``/``list``/``tuple``/``int`` data, except that the original Python 2 files (JSB
Chorales) store each note as a ``numpy.int64`` scalar. Unpickling that asks for two globals,
``numpy.core.multiarray.scalar`` (``numpy._core.multiarray.scalar`` in numpy 2) and ``numpy.dtype``. This
unpickler admits exactly those two, and only as stand-ins written here: they decode a fixed-size integer
from its raw bytes without calling into numpy (plus ``_codecs.encode`` restricted to latin-1, which Python 3
uses to write those raw bytes at protocol 2). Every other global is refused before anything is built, so a
pickle whose ``__reduce__`` would run ``os.system`` (or anything else) never executes.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from lnf_core.safetensors_header import HeaderError, open_regular_file

from .types import DataError, safe_repr

#: Largest pickle read (the benchmark datasets are 1-5 MB; loading one costs ~6x its size in memory).
MAX_PICKLE_BYTES = 64 * 1024 * 1024

# Integer dtype codes a note may be stored as: code -> (size in bytes, signed).
_INT_CODES = {
    "i1": (1, True), "i2": (2, True), "i4": (4, True), "i8": (8, True),
    "u1": (1, False), "u2": (2, False), "u4": (4, False), "u8": (8, False),
}  # fmt: skip


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global this unpickler does not admit."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"refused global {module}.{name}")
        self.module = module
        self.name = name


class _IntDType:
    """Stand-in for ``numpy.dtype(code, align, copy)`` limited to plain integer dtypes."""

    def __init__(self, code: Any, align: Any = 0, copy: Any = 0) -> None:
        if isinstance(code, bytes):
            code = code.decode("latin1")
        if not isinstance(code, str) or code not in _INT_CODES:
            raise pickle.UnpicklingError(f"numpy.dtype({safe_repr(code)}) is not an integer type a note can have")
        self.size, self.signed = _INT_CODES[code]
        self.byteorder = sys.byteorder

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, endian, subdescr, names, fields, elsize, alignment, flags).
        if not isinstance(state, tuple) or len(state) < 5 or any(s is not None for s in state[2:5]):
            raise pickle.UnpicklingError("unexpected numpy.dtype state (structured dtypes are not notes)")
        endian = state[1]
        if isinstance(endian, bytes):
            endian = endian.decode("latin1")
        if endian == "<":
            self.byteorder = "little"
        elif endian == ">":
            self.byteorder = "big"
        elif endian not in ("|", "="):
            raise pickle.UnpicklingError(f"unexpected numpy.dtype byte order {safe_repr(endian)}")


def _int_scalar(dtype: Any, data: Any = None) -> int:
    """Stand-in for ``numpy.core.multiarray.scalar(dtype, raw_bytes)``: returns the integer as ``int``."""
    if not isinstance(dtype, _IntDType):
        raise pickle.UnpicklingError("numpy scalar of a non-integer dtype")
    if isinstance(data, str):  # Python 2 byte strings arrive decoded as latin-1
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != dtype.size:
        raise pickle.UnpicklingError("numpy scalar with malformed raw bytes")
    return int.from_bytes(data, dtype.byteorder, signed=dtype.signed)


def _latin1_encode(text: Any, encoding: Any = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode(text, 'latin1')``: how Python 3 writes bytes at pickle protocol 2."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is admitted only to rebuild latin-1 byte strings")
    return text.encode("latin1")


class _Admitted:
    """An admitted global as the unpickler hands it out: callable, but sealed.

    The pickle ``BUILD`` opcode can set attributes on any object it is given (``__setstate__`` or the
    instance dict). Handing out these wrappers, rather than the module's own functions and classes, means a
    crafted file cannot alter the stand-ins for later loads.
    """

    __slots__ = ("_fn", "_label")

    def __init__(self, fn: Any, label: str) -> None:
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_label", label)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise pickle.UnpicklingError(f"{self._label} cannot be modified")

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"{self._label} cannot be modified")

    def __reduce__(self) -> Any:
        raise TypeError("not picklable")


_SCALAR = _Admitted(_int_scalar, "numpy scalar")
_ADMITTED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "dtype"): _Admitted(_IntDType, "numpy.dtype"),
    ("_codecs", "encode"): _Admitted(_latin1_encode, "_codecs.encode"),  # raw bytes at protocol 2 (Python 3)
    # Plain containers: a step may be stored as a set of notes. Building one runs no user code, and the
    # builtin types are immutable.
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals the music pickles need (see module doc)."""

    def __init__(self, file: io.BufferedIOBase) -> None:
        # latin1 turns Python 2 byte strings (dict keys, numpy raw bytes) into str losslessly.
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ADMITTED[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_load_pickle(path: str | Path) -> Any:
    """Load a data pickle without executing anything in it.

    Raises :class:`DataError` naming the file when it cannot be read, is damaged or truncated, or asks for a
    global outside the admitted set (the refused global is named; the payload is never called).
    """
    path = Path(path)
    try:
        with open_regular_file(path) as f:  # a pipe would block open(); a folder/device is refused
            size = os.fstat(f.fileno()).st_size
            if size > MAX_PICKLE_BYTES:
                raise DataError(f"{path}: {size / 2**20:.0f} MiB, far larger than a music dataset pickle (at most "
                                f"{MAX_PICKLE_BYTES // 2**20} MiB are read); is it the right file?", path)
            return RestrictedUnpickler(f).load()
    except DataError:
        raise
    except HeaderError as e:
        raise DataError(f"{path}: {e}; expected a .pickle file.", path) from None
    except RefusedGlobal as e:
        raise DataError(
            f"{path}: refused to load this pickle: it asks for the Python global '{e.module}.{e.name}', which "
            "a music data file never needs (it would run code while loading). Nothing in it was executed. "
            "If the file came from somewhere you do not trust, delete it; otherwise obtain a clean copy of "
            "the dataset.",
            path,
        ) from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.", path) from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a .pickle file.", path) from None
    except PermissionError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}); check the file permissions.", path) from None
    except MemoryError:
        raise DataError(f"{path}: damaged pickle (it asks for more memory than this machine has).", path) from None
    except RecursionError:
        raise DataError(f"{path}: damaged pickle (nested too deeply to be a dataset).", path) from None
    except Exception as e:  # any failure inside the unpickler means a damaged file
        try:
            reason = str(e)[:300] or type(e).__name__
        except Exception:
            reason = type(e).__name__
        raise DataError(
            f"{path}: damaged or not a pickle file ({type(e).__name__}: {reason}). "
            "The file may be truncated by an interrupted download; obtain a fresh copy.",
            path,
        ) from None
