"""Latent-space tools of the window: variations, interpolation, scoring, and MIDI files scored by the model.

The maths is in :mod:`app.session` (Qt-free); this controller runs it on workers and reports through
signals, so the main window only adds the resulting pieces to the gallery and shows the messages.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app import session
from app.session import LoadedModel, Piece
from app.workers import Worker, WorkerPool

NLL_SAMPLES = 30


class LatentEditor(QObject):
    """Starts the jobs; every outcome arrives as a signal on the UI thread."""

    pieces_ready = Signal(list, str, str)  # new pieces, a gallery caption, a status line
    scored = Signal(object, object)  # Piece, session.Score
    status = Signal(str)
    error = Signal(str, str)  # title, message

    def __init__(self, workers: WorkerPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workers = workers

    def _run(self, title: str, fn, *args, on_result) -> Worker:
        worker = Worker(fn, *args)
        worker.signals.error.connect(lambda m: self.error.emit(title, m))
        worker.signals.result.connect(on_result)
        self.workers.start(worker)
        return worker

    def variations(self, loaded: LoadedModel, piece: Piece, n: int, temperature: float, seed: int,
                   decode: str = "threshold") -> Worker | None:
        """n pieces sampled around the posterior of ``piece``: z = mu + temperature * sigma * eps."""
        if not loaded.has_latent:
            self.error.emit("Variations", f"{loaded.label} has no latent space (it is an LSTM baseline).")
            return None
        self.status.emit(f"Sampling {n} variations of {piece.title}…")

        def done(rolls) -> None:
            pieces = [Piece(r, f"{piece.title} var {i + 1}", "variation", seed=seed, index=i + 1)
                      for i, r in enumerate(rolls)]
            self.pieces_ready.emit(pieces, f"Variations of {piece.title} · temperature {temperature:g} · seed {seed}",
                                   f"{n} variations of {piece.title}")

        return self._run("Variations", session.variations, loaded.model, piece.roll, n, temperature, seed, decode,
                         on_result=done)

    def interpolate(
        self, loaded: LoadedModel, a: Piece, b: Piece, steps: int, spherical: bool = False
    ) -> Worker | None:
        """Decode ``steps`` points between the posterior means of two pieces."""
        if not loaded.has_latent:
            self.error.emit("Interpolate", f"{loaded.label} has no latent space (it is an LSTM baseline).")
            return None
        self.status.emit(f"Interpolating {a.title} → {b.title}…")
        note = "" if a.length == b.length else f" (cropped to {min(a.length, b.length)} steps)"

        def done(rolls) -> None:
            pieces = [Piece(r, f"{a.title}→{b.title} {i + 1}/{steps}", "interpolation", index=i + 1)
                      for i, r in enumerate(rolls)]
            text = f"{a.title} → {b.title} in {steps} steps{note}"
            self.pieces_ready.emit(pieces, f"Interpolation {text}", f"Interpolated {text}")

        return self._run("Interpolate", session.interpolate, loaded.model, a.roll, b.roll, steps, spherical,
                         on_result=done)

    def score(self, loaded: LoadedModel, piece: Piece) -> Worker:
        """Importance-weighted NLL of ``piece`` under the model; sets ``piece.nll_per_step``."""
        self.status.emit(f"Scoring {piece.title} under {loaded.label}…")
        label, test_nll = loaded.label, loaded.info.test_nll

        def done(score: session.Score) -> None:
            piece.nll_per_step = score.nll_per_step
            cropped = f" (first {score.steps} of {score.cropped_from} steps)" if score.cropped_from else ""
            ref = f"; the model's test-set average is {test_nll:.2f}" if test_nll is not None else ""
            self.scored.emit(piece, score)
            self.status.emit(f"{piece.title}: NLL {score.nll_per_step:.2f} nats/step under {label}{cropped}{ref} "
                             "(lower = more like the training music)")

        return self._run("Score", session.score_roll, loaded.model, piece.roll, NLL_SAMPLES, on_result=done)

    def add_midi(self, roll, path: str | Path, loaded: LoadedModel | None, note: str = "") -> Piece:
        """A MIDI file's roll (read on a worker, see :func:`app.midi_import.read_midi_roll`) as a piece, scored
        under the model when one is loaded."""
        path = Path(path)
        piece = Piece(roll, path.stem, "midi")
        self.pieces_ready.emit([piece], f"MIDI file {path.name}{note}",
                               f"Opened {path.name}: {roll.shape[0]} steps{note}")
        if loaded is not None:
            self.score(loaded, piece)
        return piece
