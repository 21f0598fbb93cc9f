"""Latent-space tools of the window: variations, interpolation, scoring, and MIDI files scored by the model.

The maths is in :mod:`app.latent` and :mod:`app.pitchspace` (Qt-free): every piece is moved into the model's
data space (its key and register detected) before it is encoded or scored, and the results come back in the
piece's own key and register. This controller runs that on workers and reports through signals, so the main
window only adds the resulting pieces to the gallery and shows the messages.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app import pitchspace
from app.models import LoadedModel
from app.pieces import Piece
from app.workers import Worker, WorkerPool

NLL_SAMPLES = 30


class LatentEditor(QObject):
    """Starts the jobs; every outcome arrives as a signal on the UI thread."""

    pieces_ready = Signal(list, str, str)  # new pieces, a gallery caption, a status line
    scored = Signal(object, object)  # Piece, latent.Score
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
        if piece.steps_per_quarter != loaded.steps_per_beat:
            self.error.emit("Variations", _grid_message(piece, loaded))
            return None

        def done(out) -> None:
            rolls, placement = out
            pieces = [Piece(r, f"{piece.title} var {i + 1}", "variation", seed=seed, index=i + 1,
                            steps_per_quarter=piece.steps_per_quarter, meter=piece.meter, key_name=piece.key_name,
                            placement=placement.describe("encoded as"))
                      for i, r in enumerate(rolls)]
            self.pieces_ready.emit(pieces, f"Variations of {piece.title} · temperature {temperature:g} · seed {seed} · "
                                   f"{placement.describe('encoded as')}",
                                   f"{n} variations of {piece.title} ({placement.describe('encoded as')})")

        return self._run("Variations", pitchspace.variations, loaded, piece.roll, n, temperature, seed, decode,
                         on_result=done)

    def interpolate(
        self, loaded: LoadedModel, a: Piece, b: Piece, steps: int, spherical: bool = False
    ) -> Worker | None:
        """Decode ``steps`` points between the posterior means of two pieces."""
        if not loaded.has_latent:
            self.error.emit("Interpolate", f"{loaded.label} has no latent space (it is an LSTM baseline).")
            return None
        self.status.emit(f"Interpolating {a.title} → {b.title}…")
        for p in (a, b):
            if p.steps_per_quarter != loaded.steps_per_beat:
                self.error.emit("Interpolate", _grid_message(p, loaded))
                return None
        note = "" if a.length == b.length else f" (cropped to {min(a.length, b.length)} steps)"

        def done(out) -> None:
            rolls, pa, pb = out
            pieces = [Piece(r, f"{a.title}→{b.title} {i + 1}/{steps}", "interpolation", index=i + 1,
                            steps_per_quarter=a.steps_per_quarter, meter=a.meter)
                      for i, r in enumerate(rolls)]
            text = f"{a.title} → {b.title} in {steps} steps{note}"
            self.pieces_ready.emit(pieces, f"Interpolation {text} · {pa.describe('encoded as')} / "
                                   f"{pb.describe('encoded as')}", f"Interpolated {text}")

        return self._run("Interpolate", pitchspace.interpolate, loaded, a.roll, b.roll, steps, spherical,
                         on_result=done)

    def score(self, loaded: LoadedModel, piece: Piece) -> Worker | None:
        """Score ``piece`` under the model in the model's data space: sets ``piece.nll_per_step`` (raw NLL per
        step), ``piece.typicality`` (calibrated percentile) and ``piece.placement`` (what was done to the key).

        The NLL comes first; when the model's typicality calibration is not known yet (a model without it in its
        metadata: its test pieces are scored once, which takes a while), the typicality follows from a second job."""
        if piece.steps_per_quarter != loaded.steps_per_beat:
            self.error.emit("Score", _grid_message(piece, loaded))
            return None
        self.status.emit(f"Scoring {piece.title} under {loaded.label}…")
        label, test_nll = loaded.label, loaded.info.test_nll
        ref = f"; test-set average NLL {test_nll:.2f}" if test_nll is not None else ""

        def show(report: pitchspace.ScoreReport) -> None:
            piece.nll_per_step = report.nll_per_step
            piece.typicality = report.typicality
            piece.placement = report.placement.describe()
            piece.key_name = report.placement.key.name
            self.scored.emit(piece, report)
            self.status.emit(f"{piece.title}: {report.summary(label)}{ref}")

        def done(report: pitchspace.ScoreReport) -> None:
            show(report)
            if report.typicality is None and pitchspace.calibration_pending(loaded):
                self._run("Score", pitchspace.calibration_for, loaded,
                          on_result=lambda cal: show(pitchspace.with_calibration(report, cal)) if cal else None)

        return self._run("Score", pitchspace.score_roll_now, loaded, piece.roll, NLL_SAMPLES, on_result=done)

    def add_midi(self, midi, path: str | Path, loaded: LoadedModel | None, note: str = "") -> Piece:
        """A MIDI file read on a worker (:func:`app.midi_import.read_midi_piece`: a ``MidiPiece`` on the model's
        grid with the file's time signature; a bare roll is taken as on the model's grid) as a piece at sounding
        pitch, its key detected, scored under the model when one is loaded."""
        from app.midi_import import MidiPiece

        path = Path(path)
        if not isinstance(midi, MidiPiece):
            midi = MidiPiece(midi, loaded.steps_per_beat if loaded else 1, None, None, 120.0)
        roll = midi.roll
        key = pitchspace.piece_key(roll)
        piece = Piece(roll, path.stem, "midi", steps_per_quarter=midi.steps_per_quarter, meter=midi.meter,
                      key_name=key.name)
        meter = f", {midi.meter[0]}/{midi.meter[1]}" if midi.meter else ""
        self.pieces_ready.emit([piece], f"MIDI file {path.name}{note}",
                               f"Opened {path.name}: {roll.shape[0]} steps ({midi.steps_per_quarter} per quarter "
                               f"note{meter}), {key.name}{note}")
        if loaded is not None:
            self.score(loaded, piece)
        return piece


def _grid_message(piece: Piece, loaded: LoadedModel) -> str:
    return (f"{piece.title} is on a grid of {piece.steps_per_quarter} step(s) per quarter note, {loaded.label} on "
            f"{loaded.steps_per_beat}. Open the file again (or switch back to the model that made the piece).")
