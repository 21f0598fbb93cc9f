"""Export of pieces from the window: MIDI, WAV (rendered block by block) and roll PNGs.

The file writing is :mod:`app.export` (Qt-free); this adds the file dialogs, names the files after the model,
seed and piece, makes sure the export folder exists before a dialog opens there, and runs every write on a
worker (with progress and Cancel in the status bar), so the window never waits for a file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QFileDialog, QWidget

from app.pieces import Piece
from app.ui.settings import AppSettings

RunJob = Callable[..., Any]  # run(fn, description, on_result) -> Worker: starts fn on a worker, tracked in the UI


def safe_name(text: str) -> str:
    """A file-name-safe version of a piece title: ``"#1 var 2"`` -> ``"1-var-2"``."""
    name = re.sub(r"[^\w.]+", "-", text, flags=re.ASCII).strip("-.")
    return re.sub(r"-{2,}", "-", name) or "piece"


def piece_stem(piece: Piece, model_stem: str | None = None) -> str:
    """A file name (without suffix) that says what a piece is: ``jsb-iaf-scf-seed123-1`` for the first piece of
    a batch sampled with seed 123 by ``jsb-iaf-scf.lnf``; variations and interpolations carry their title
    (``jsb-iaf-scf-seed7-1-var-3``, ``jsb-iaf-scf-1-3-2of5``); a MIDI file keeps its own name."""
    if piece.source == "midi":
        return safe_name(piece.title)
    parts = [safe_name(model_stem)] if model_stem else ["lnf"]
    if piece.seed is not None and piece.source in ("generated", "variation"):
        parts.append(f"seed{piece.seed}")
    if piece.source == "generated":
        parts.append(str(piece.index or safe_name(piece.title)))
    else:
        parts.append(safe_name(piece.title.replace("/", "of")))
    return "-".join(parts)


def ensure_folder(folder: str | Path) -> Path:
    """``folder``, created if missing; the home folder when it cannot be created."""
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path.home()
    return path


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
        run: RunJob | None = None,
        file_stem: Callable[[Piece], str] | None = None,
    ) -> None:
        self.parent = parent
        self.settings = settings
        self.midi_options = midi_options
        self.synthesizer = synthesizer
        self.status = status
        self.error = error
        self.run = run
        self.file_stem = file_stem or (lambda piece: piece_stem(piece))
        self.last_written: list[Path] = []

    # -- writers (any thread)
    def write_midi(self, piece: Piece, path: Path, options: dict[str, Any] | None = None) -> Path:
        from app.export import write_midi

        return write_midi(piece.roll, path, velocities=piece.velocities,
                          **(self.midi_options(piece) if options is None else options))

    def export_pieces(self, pieces: Sequence[Piece], folder: str | Path, kinds: Sequence[str] = ("mid",),
                      options: dict[str, Any] | Sequence[dict[str, Any]] | None = None, progress=None,
                      cancel=None) -> list[Path]:
        """Numbered files (``lnf_001.mid`` / ``.wav``) in ``folder``, never overwriting; returns the paths.
        ``options``: the MIDI settings of every piece (a list, one per piece, or one for all); by default each
        piece's own (its grid, time signature and key: ``midi_options(piece)``)."""
        from app.export import export_batch

        if options is None:
            options = [self.midi_options(p) for p in pieces]  # each piece keeps its own grid, meter and key
        per_roll = list(options) if isinstance(options, (list, tuple)) else [options] * len(pieces)
        synth = self.synthesizer() if "wav" in kinds else None
        return export_batch([p.roll for p in pieces], folder, "lnf", kinds, synth, progress=progress, cancel=cancel,
                            velocities=[p.velocities for p in pieces], per_roll=per_roll)

    def default_folder(self) -> Path:
        """The export folder, created now so the dialog opens there (not in the process's working folder)."""
        return ensure_folder(self.settings.output_dir)

    # -- dialogs (UI thread); the writing runs on a worker
    def _start(self, fn, text: str, on_result) -> Any:
        if self.run is None:  # no worker pool (scripts): write right here
            try:
                on_result(fn(progress=None, cancel=None))
            except Exception as exc:  # ExportError, AudioUnavailable, ...: shown, never raised into Qt
                self.error("Export failed", str(exc))
            return None
        return self.run(fn, text, on_result, "Export failed")

    def midi_dialog(self, pieces: Sequence[Piece]) -> Any:
        """One piece: a Save dialog; several: a folder of numbered files."""
        if len(pieces) > 1:
            return self.folder_dialog(pieces, ("mid",))
        if not pieces:
            return None
        piece = pieces[0]
        start = str(self.default_folder() / f"{self.file_stem(piece)}.mid")
        path, _ = QFileDialog.getSaveFileName(self.parent, "Export MIDI", start, "MIDI files (*.mid)")
        if not path:
            return None
        self.settings.output_dir = str(Path(path).parent)
        options = self.midi_options(piece)  # taken now, on the UI thread: the piece's grid, meter and key
        roll_piece = Piece(piece.roll.copy(), piece.title, piece.source, piece.seed, piece.index,
                           velocities=None if piece.velocities is None else piece.velocities.copy())

        def job(progress=None, cancel=None) -> list[Path]:
            return [self.write_midi(roll_piece, Path(path), options)]

        return self._start(job, f"Writing {Path(path).name}…", self._written)

    def folder_dialog(self, pieces: Sequence[Piece], kinds: Sequence[str]) -> Any:
        if not pieces:
            return None
        folder = QFileDialog.getExistingDirectory(self.parent, "Export to folder", str(self.default_folder()))
        if not folder:
            return None
        return self.export_to_folder(pieces, folder, kinds)

    def export_to_folder(self, pieces: Sequence[Piece], folder: str | Path, kinds: Sequence[str]) -> Any:
        """Start writing ``pieces`` as numbered files in ``folder`` on a worker (what the dialog does)."""
        self.settings.output_dir = str(folder)
        options = [self.midi_options(p) for p in pieces]  # each piece's own grid, meter and key, taken now
        copies = [Piece(p.roll.copy(), p.title, p.source, p.seed, p.index,
                        velocities=None if p.velocities is None else p.velocities.copy()) for p in pieces]
        what = "WAV" if "wav" in kinds else "MIDI"
        noun = "piece" if len(copies) == 1 else "pieces"

        def job(progress=None, cancel=None) -> list[Path]:
            return self.export_pieces(copies, folder, kinds, options, progress, cancel)

        return self._start(job, f"Exporting {len(copies)} {noun} as {what}…", self._written)

    def png_dialog(self, piece: Piece | None, renderer: Callable[[], Any]) -> Any:
        """Save the roll picture ``renderer()`` (a QImage, drawn on the worker) as a PNG."""
        if piece is None:
            return None
        start = str(self.default_folder() / f"{self.file_stem(piece)}.png")
        path, _ = QFileDialog.getSaveFileName(self.parent, "Export roll as PNG", start, "PNG images (*.png)")
        if not path:
            return None
        self.settings.output_dir = str(Path(path).parent)
        return self.save_png(renderer, path)

    def save_png(self, renderer: Callable[[], Any], path: str | Path) -> Any:
        def job(progress=None, cancel=None) -> list[Path]:
            from app.export import _atomic_write

            img = renderer()

            def write(tmp: Path) -> None:
                if not img.save(str(tmp), "PNG"):
                    raise OSError("the image could not be encoded")

            return [_atomic_write(Path(path), write)]

        return self._start(job, f"Drawing {Path(path).name}…", self._written)

    def _written(self, paths: list[Path]) -> None:
        self.last_written = list(paths)
        if len(paths) == 1:
            self.status(f"Wrote {paths[0]}")
        elif paths:
            self.status(f"Wrote {len(paths)} files to {paths[0].parent}")
