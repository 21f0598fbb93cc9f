"""Editing pieces in the window: versions in the gallery, Regenerate / Continue / Intro on workers.

The first edit of a piece makes a new *version* of it (``"<title> · edit"``, source ``edit``) next to the
original in the gallery, and the editor goes on editing that version; the original never changes. Undo/redo
history lives with each version (an :class:`app.editing.EditModel` per piece), so coming back to a version
restores it. Regenerate, Continue and Intro run :func:`app.regenerate.run_regenerate` on a worker with progress
and Cancel; the ranked candidates join the gallery (best first, the region marked) and the first is selected.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal

from app import regenerate as rg
from app.editing import EditModel
from app.pieces import Piece
from app.ui.roll_editor import EditBar, RollEditor
from app.workers import Worker, WorkerPool


class EditController(QObject):
    """Owns the per-piece edit models and the regeneration worker of one window."""

    status = Signal(str)
    error = Signal(str, str)
    version_created = Signal(object)  # Piece
    piece_changed = Signal(object)  # Piece whose roll changed (an edited version)
    candidates_ready = Signal(list, str)  # pieces, caption
    running_changed = Signal(bool)

    def __init__(self, editor: RollEditor, bar: EditBar, gallery, workers: WorkerPool, window) -> None:
        super().__init__(window)
        self.editor, self.bar, self.gallery, self.workers, self.window = editor, bar, gallery, workers, window
        self.docs: dict[int, EditModel] = {}
        self.regions: dict[int, tuple] = {}  # piece uid -> region to show (regenerated candidates)
        self.piece: Piece | None = None
        self.worker: Worker | None = None
        editor.edited.connect(self._on_edited)
        editor.region_changed.connect(self._on_region)
        bar.snap_changed.connect(editor.set_snap)
        bar.velocity_changed.connect(editor.set_selection_velocity)
        bar.regenerate_requested.connect(self.regenerate)
        bar.continue_requested.connect(lambda: self.extend("continue"))
        bar.intro_requested.connect(lambda: self.extend("intro"))
        bar.cancel_requested.connect(self.cancel)
        bar.clear_region_requested.connect(editor.clear_region)
        editor.selection_changed.connect(self._on_selection)

    # ---------------------------------------------------------------------------------------------- pieces
    @property
    def loaded(self):
        return self.window.loaded

    def steps_per_beat(self) -> int:
        return self.loaded.steps_per_beat if self.loaded else 1

    def bar_steps(self) -> int | None:
        """Steps in a bar of the shown piece (its time signature); None: 4 beats."""
        if self.piece is None or not self.piece.meter:
            return None
        return rg.bar_of(self.piece, self.steps_per_beat())

    def show_piece(self, piece: Piece | None) -> None:
        """Attach the piece's edit model to the editor (after the window showed its roll)."""
        self.piece = piece
        if piece is None:
            self.editor.attach(None)
        else:
            doc = self.docs.get(piece.uid)
            if doc is None or doc.length != piece.length:
                doc = EditModel.from_roll(piece.roll, piece.velocities, self.steps_per_beat())
                self.docs[piece.uid] = doc
            doc.set_snap(int(self.bar.snap.currentData() or 1))
            self.editor.attach(doc, self.regions.get(piece.uid))
        self.update_bar()

    def update_bar(self) -> None:
        latent = bool(self.loaded is not None and self.loaded.has_latent)
        self.bar.set_enabled_for(self.piece is not None, latent)

    def _on_selection(self, count: int) -> None:
        doc = self.editor.doc
        if doc is not None and count:
            vels = {n.velocity for n in doc.selected_notes()}
            if len(vels) == 1:
                self.bar.velocity.blockSignals(True)
                self.bar.velocity.setValue(vels.pop())
                self.bar.velocity.blockSignals(False)

    def _on_region(self, region) -> None:
        self.bar.set_region(region, self.steps_per_beat(), self.bar_steps())

    def _on_edited(self, label: str) -> None:
        piece, doc = self.piece, self.editor.doc
        if piece is None or doc is None:
            return
        if piece.source != "edit":
            self._fork(piece, doc)
            return
        piece.roll = doc.roll()
        piece.velocities = doc.velocity_grid()
        piece.nll_per_step = None
        self._refresh_gallery(piece)
        self.piece_changed.emit(piece)
        self.status.emit(f"{label} · {piece.title} (Ctrl+Z undoes)")

    def _fork(self, original: Piece, doc: EditModel) -> None:
        """The first edit of ``original``: a new version holds the edited notes (and the undo history)."""
        version = Piece(doc.roll(), f"{original.title} · edit", "edit", seed=original.seed, index=original.index,
                        parent_uid=original.uid, note=f"edited from {original.title}",
                        velocities=doc.velocity_grid(), steps_per_quarter=original.steps_per_quarter,
                        meter=original.meter, key_name=original.key_name)
        self.docs.pop(original.uid, None)  # the original gets a fresh model (its own roll) when shown again
        self.docs[version.uid] = doc
        region = self.editor.region
        if region is not None:
            self.regions[version.uid] = region
        self.editor.keep_view_once = True
        self.gallery.append_pieces([version])  # selects it: the window shows it, show_piece re-attaches doc
        self.version_created.emit(version)
        self.status.emit(f"Editing a new version of {original.title}: “{version.title}” (the original stays)")

    def _refresh_gallery(self, piece: Piece) -> None:
        self.gallery.refresh_piece(piece)

    # ---------------------------------------------------------------------------------------------- regenerate
    def _ready(self, what: str) -> bool:
        if self.loaded is None or self.piece is None:
            self.error.emit(what, "Select a piece and load a model first.")
            return False
        if not self.loaded.has_latent:
            self.error.emit(what, f"{self.loaded.label} has no latent space (an LSTM baseline).")
            return False
        return self.worker is None

    def current_roll(self) -> np.ndarray:
        return self.editor.doc.roll() if self.editor.doc is not None else np.asarray(self.piece.roll, dtype=bool)

    def regenerate(self, n: int | None = None) -> Worker | None:
        """Candidates for the marked region (notes outside it kept bit for bit)."""
        if not self._ready("Regenerate"):
            return None
        region = self.editor.region
        if region is None:
            self.error.emit("Regenerate", "Mark a region first: drag in the bar ruler above the roll "
                            "(Alt-drag in the roll for a pitch range).")
            return None
        start, end, keys = region
        return self._start(rg.RegenRequest("region", start, end, keys), n)

    def extend(self, kind: str, bars: float | None = None, n: int | None = None) -> Worker | None:
        """Continue (``kind="continue"``) or add an intro (``"intro"``) of ``bars`` bars (default: the bar's)."""
        if not self._ready("Continue" if kind == "continue" else "Intro"):
            return None
        bars = float(self.bar.bars.value() if bars is None else bars)
        steps = rg.bars_to_steps(bars, self.steps_per_beat(), self.bar_steps())
        return self._start(rg.RegenRequest(kind, steps=steps), n)

    def _start(self, request: rg.RegenRequest, n: int | None) -> Worker:
        piece = self.piece
        assert piece is not None and self.loaded is not None
        # at sounding pitch: run_regenerate moves it into the model's key and register and the candidates back
        current = self.current_roll()
        same = piece.transpose is not None and np.array_equal(current, piece.roll)  # a generated piece, as sampled
        source = Piece(current, piece.title, piece.source, uid=piece.uid,
                       steps_per_quarter=piece.steps_per_quarter, meter=piece.meter, key_name=piece.key_name,
                       transpose=piece.transpose if same else None)
        velocities = piece.velocities
        n = int(self.bar.candidates.value() if n is None else n)
        settings = self.window.generate_panel.settings()
        spb = self.steps_per_beat()
        from app.pitchspace import space_of

        worker = Worker(rg.run_regenerate, self.loaded.model, source, request, n, settings.seed, settings.decode,
                        None, spb, self.loaded.max_len, space_of(self.loaded))
        worker.signals.progress.connect(lambda d, t, m: (self.bar.set_progress(d, t), self.status.emit(m)))
        worker.signals.result.connect(lambda r, p=piece, v=velocities: self._result(p, v, r))
        worker.signals.error.connect(lambda m: self.error.emit("Regenerate", m))
        worker.signals.cancelled.connect(lambda: self.status.emit("Regeneration cancelled"))
        worker.signals.finished.connect(self._finished)
        self.worker = worker
        self.bar.set_running(True)
        self.running_changed.emit(True)
        self.status.emit(f"{request.describe(spb, self.bar_steps()).capitalize()}: {n} candidates of {piece.title}…")
        self.workers.start(worker)
        return worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.status.emit("Cancelling…")

    def _finished(self) -> None:
        if self.worker is None:
            return
        self.worker = None
        self.bar.set_running(False)
        self.update_bar()
        self.running_changed.emit(False)

    @property
    def is_running(self) -> bool:
        return self.worker is not None

    def _result(self, piece: Piece, velocities, result: rg.RegenResult) -> None:
        self._finished()
        start, end = result.region
        region = (start, end, result.keys)
        for cand in result.pieces:
            cand.velocities = _carry_velocities(velocities, cand.roll, result.request)
            self.regions[cand.uid] = region
        what = result.request.describe(self.steps_per_beat(), self.bar_steps())
        caption = (f"{piece.title} {what} · {len(result.pieces)} candidates ranked by likelihood "
                   f"({result.method}, {result.seconds:.1f} s)")
        self.editor.keep_view_once = result.request.kind == "region"
        self.candidates_ready.emit(result.pieces, caption)
        best = result.pieces[0]
        self.status.emit(f"{len(result.pieces)} candidates in {result.seconds:.1f} s; best NLL "
                         f"{best.nll_per_step:.2f} nats/step (ranking score) — pick one in the gallery")


def _carry_velocities(velocities, roll: np.ndarray, request: rg.RegenRequest):
    """The source's velocity grid in the candidate's timeline (new notes: the default)."""
    if velocities is None:
        return None
    v = np.array(velocities, dtype=np.uint8)
    if request.kind == "region":
        lo, hi = (0, v.shape[1] - 1) if request.keys is None else request.keys
        v[request.start : request.end, lo : hi + 1] = 0
    if request.kind == "continue":
        v = np.concatenate([v, np.zeros((request.steps, v.shape[1]), np.uint8)])
    elif request.kind == "intro":
        v = np.concatenate([np.zeros((request.steps, v.shape[1]), np.uint8), v])
    if v.shape != roll.shape:
        return None
    return np.where(roll, v, 0).astype(np.uint8)
