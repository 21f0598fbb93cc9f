"""Export of pieces from the window: MIDI, WAV (rendered with the playback synthesizer) and roll PNGs.

The file writing is :mod:`app.export` (Qt-free); this adds the file dialogs, remembers the folder and turns
failures into messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QFileDialog, QWidget

from app.session import Piece
from app.ui.settings import AppSettings


def safe_name(text: str) -> str:
    """A file-name-safe version of a piece title."""
    return "".join(c if c.isalnum() or c in "-_ " else "-" for c in text).strip() or "piece"


class Exporter:
    """Dialogs and writers for the File ▸ Export actions."""

    def __init__(
        self,
        parent: QWidget,
        settings: AppSettings,
        midi_options: Callable[..., dict[str, Any]],
        synthesizer: Callable[[], Any],
        status: Callable[[str], None],
        error: Callable[[str, str], None],
    ) -> None:
        self.parent = parent
        self.settings = settings
        self.midi_options = midi_options
        self.synthesizer = synthesizer
        self.status = status
        self.error = error

    def write_midi(self, piece: Piece, path: Path) -> Path:
        from app.export import write_midi

        return write_midi(piece.roll, path, **self.midi_options(piece))

    def export_pieces(self, pieces: Sequence[Piece], folder: str | Path, kinds: Sequence[str] = ("mid",)) -> list[Path]:
        """Numbered files (``lnf_001.mid`` / ``.wav``) in ``folder``, never overwriting; returns the paths."""
        from app.export import export_batch

        synth = self.synthesizer() if "wav" in kinds else None
        options = [self.midi_options(p) for p in pieces]  # each piece keeps its own grid, meter and key
        return export_batch([p.roll for p in pieces], folder, "lnf", kinds, synth, per_roll=options)

    def midi_dialog(self, pieces: Sequence[Piece]) -> None:
        """One piece: a Save dialog; several: a folder of numbered files."""
        if len(pieces) > 1:
            self.folder_dialog(pieces, ("mid",))
            return
        if not pieces:
            return
        start = str(Path(self.settings.output_dir) / f"{safe_name(pieces[0].title)}.mid")
        path, _ = QFileDialog.getSaveFileName(self.parent, "Export MIDI", start, "MIDI files (*.mid)")
        if not path:
            return
        try:
            written = self.write_midi(pieces[0], Path(path))
        except Exception as exc:  # ExportError, ValueError: shown, never raised into Qt
            self.error("Export failed", str(exc))
            return
        self.settings.output_dir = str(Path(path).parent)
        self.status(f"Wrote {written}")

    def folder_dialog(self, pieces: Sequence[Piece], kinds: Sequence[str]) -> None:
        if not pieces:
            return
        folder = QFileDialog.getExistingDirectory(self.parent, "Export to folder", self.settings.output_dir)
        if not folder:
            return
        self.settings.output_dir = folder
        try:
            written = self.export_pieces(pieces, folder, kinds)
        except Exception as exc:  # AudioUnavailable, ExportError, ...
            self.error("Export failed", str(exc))
            return
        self.status(f"Wrote {len(written)} files to {folder}")

    def png_dialog(self, piece: Piece | None, save: Callable[[str], Path]) -> None:
        if piece is None:
            return
        start = str(Path(self.settings.output_dir) / f"{safe_name(piece.title)}.png")
        path, _ = QFileDialog.getSaveFileName(self.parent, "Export roll as PNG", start, "PNG images (*.png)")
        if not path:
            return
        try:
            save(path)
        except OSError as exc:
            self.error("Export failed", str(exc))
            return
        self.settings.output_dir = str(Path(path).parent)
        self.status(f"Wrote {path}")
