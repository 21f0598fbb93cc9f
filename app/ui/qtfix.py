"""Work around a reference-count bug of PySide6 6.12 on CPython 3.11: ``None`` loses a reference per call.

Found here (2026-11): with PySide6 6.12.0 on CPython 3.11, every call of a Qt method that returns nothing
(``QPainter.drawLine``, ``QWidget.update``, ``QLabel.setText``, ``QColor.setAlpha`` ...) returns ``None``
to Python *without* a new reference. From CPython 3.12 on ``None`` is immortal and this is harmless; on
3.11 its count falls by one per call and, a few thousand calls after start-up (``None`` starts near 5,000
references in a small process), the interpreter aborts with ``Fatal Python error: none_dealloc``. A piano
roll repaint alone makes about a thousand such calls.

:func:`protect_none` detects the leak (a few harmless ``QColor.setAlpha`` calls) and, only when it is
present on a CPython whose ``None`` is mortal, adds 2**40 to ``None``'s reference count once, which no
session can use up. Nothing happens on fixed versions or on CPython >= 3.12.
"""

from __future__ import annotations

import sys

_RESERVE = 1 << 40
_done = False


def none_leak_per_call(calls: int = 64) -> float:
    """How many references ``None`` loses per void PySide6 call (0.0 on a correct build)."""
    from PySide6.QtGui import QColor

    color = QColor(1, 2, 3)
    before = sys.getrefcount(None)
    for _ in range(calls):
        color.setAlpha(255)
    return (before - sys.getrefcount(None)) / calls


def protect_none() -> bool:
    """Give ``None`` a reference reserve if this PySide6 leaks it; returns whether the reserve was added."""
    global _done
    if _done or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    if none_leak_per_call() < 0.5:
        _done = True
        return False
    import ctypes

    # PyObject starts with Py_ssize_t ob_refcnt in release builds; check that before writing.
    field = ctypes.c_ssize_t.from_address(id(None))
    observed = sys.getrefcount(None)
    if abs(field.value - observed) > 16:
        return False  # an unexpected object layout (e.g. a debug build): leave it alone
    field.value += _RESERVE
    _done = True
    return sys.getrefcount(None) > _RESERVE
