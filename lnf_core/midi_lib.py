"""pretty_midi, imported without pyfluidsynth's import-time chatter on stdout.

pyfluidsynth (>= 1.4) prints "'fluidsynth' was found at libfluidsynth.so.3." on import whenever the environment
variable ``CI`` is set, and pretty_midi imports pyfluidsynth when it is installed. Printed on stdout, that line
corrupts the output of our command-line tools (``--json``) and of anything that reads their first line. Every
module that needs pretty_midi or pyfluidsynth imports it through here.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from types import ModuleType


def quiet_import(name: str) -> ModuleType:
    """``importlib.import_module(name)`` with whatever the import prints on stdout discarded."""
    with contextlib.redirect_stdout(io.StringIO()):
        return importlib.import_module(name)


with contextlib.suppress(ImportError, OSError):  # no pyfluidsynth / no libfluidsynth: pretty_midi copes
    quiet_import("fluidsynth")
pretty_midi = quiet_import("pretty_midi")

__all__ = ["pretty_midi", "quiet_import"]
