"""The main window: wires the panels, the workers, playback and export together through signals.

Layout: a sidebar (model panel, generate panel) beside a vertical splitter holding the roll area (the large
piano-roll view with its transport bar, :class:`RollArea`) above the batch area (the gallery of the current batch,
:class:`BatchArea`); the window wires their parts to the rest. Long work (loading a model,
sampling, scoring, variations, interpolation, opening MIDI files, checking the sound chain, rendering audio
for playback, writing MIDI/WAV/PNG files) runs on :class:`app.workers.Worker` threads; the UI thread only
reacts to their signals. File tasks show their progress, with Cancel, in the status bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QFrame,
    QGroupBox,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import jobs, models
from app.audio import AudioUnavailable
from app.generation import GenerationResult, GenerationSettings
from app.models import LoadedModel, ModelInfo
from app.pieces import Piece, note_count
from app.ui.actions import WindowActions
from app.ui.edit_controller import EditController
from app.ui.exporting import Exporter, piece_stem
from app.ui.generator import Generator
from app.ui.latent_edits import LatentEditor
from app.ui.model_loader import ModelLoader
from app.ui.playback import PlaybackController, midi_factory
from app.ui.settings import AppSettings
from app.ui.theme import apply_theme
from app.ui.widgets.batch_area import BatchArea
from app.ui.widgets.generate_panel import GeneratePanel
from app.ui.widgets.model_panel import ModelPanel
from app.ui.widgets.roll_area import RollArea
from app.ui.widgets.tasks import TaskIndicator
from app.workers import Worker, WorkerPool

APP_NAME = "LNF Studio"
USER_ERRORS = frozenset({"MidiReadError", "AudioUnavailable", "ExportError", "CheckpointError"})
"""Exception classes whose message is meant for the user (shown as is, not as an unexpected error)."""


def _resolved(path: Path | str) -> str:
    try:
        return str(Path(path).resolve())
    except OSError:
        return str(path)


def format_ms(seconds: float) -> str:
    """``0.0843`` -> ``"84 ms"``, ``2.5`` -> ``"2.50 s"``."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1.0 else f"{seconds:.2f} s"


class MainWindow(WindowActions, QMainWindow):
    """LNF Studio's window. Public methods mirror the menu actions so tests and scripts can drive it."""

    model_loaded = Signal(object)  # LoadedModel
    model_failed = Signal(str)
    batch_ready = Signal(object)  # GenerationResult
    pieces_added = Signal(list)  # list[Piece] (variations, interpolations, MIDI files)
    error_shown = Signal(str)
    audio_checked = Signal(object)  # AudioStatus, or None when the check failed

    def __init__(
        self,
        settings: AppSettings | None = None,
        models_dir: Path | str = models.MODELS_DIR,
        interactive: bool = True,
        configure_threads: bool = False,
        user_models_dir: Path | str | None = None,
        runs_dir: Path | str | None = None,
    ) -> None:
        super().__init__()
        self.user_models_dir = Path(user_models_dir) if user_models_dir else models.user_models_dir()
        self.runs_dir = Path(runs_dir) if runs_dir else None  # None: app.training.runs_dir()
        self.train_window = None  # app.ui.train_window.TrainWindow, made on first use
        self.training_models: dict[str, ModelInfo] = {}  # run's best.lnf -> what the model panel shows
        # Closing while a run trains: ask (interactive), else "stop" or "keep" (scripts and tests).
        self.close_policy = "ask" if interactive else "stop"
        self.settings = settings or AppSettings()
        self.models_dir = Path(models_dir)
        self.interactive = interactive  # False: errors go to the status bar/log only (scripts, screenshots)
        self.loaded: LoadedModel | None = None
        self.last_error: str | None = None
        self.last_status: str = ""
        self.workers = WorkerPool(self)
        self.io_workers = WorkerPool(self, max_threads=2)  # file tasks, so they never hold up the model's work
        self._piece_models: dict[int, str] = {}  # piece uid -> file stem of the model that made it
        self._playing_uid: int | None = None
        self.audio_status = None

        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)  # drop .mid files (scored as pieces) or .lnf checkpoints (loaded) on the window
        self.setObjectName("mainWindow")
        self.playback = PlaybackController(self)
        self.playback.set_soundfont(self.settings.soundfont or None)
        self.editor = LatentEditor(self.workers, self)
        # configure_threads: set torch's threads when loading (the app, not tests)
        self.model_loader = ModelLoader(self.workers, configure_threads, self)
        self.generator = Generator(self.workers, self)
        self.exporter = Exporter(
            self, self.settings, self.midi_options, self.playback.synthesizer,
            lambda text: self.status(text, 8000), self.show_error, self.run_task, self.piece_file_stem,
        )
        self._build_widgets()
        self.edits = EditController(self.roll_view, self.edit_bar, self.gallery, self.workers, self)
        self._build_actions()
        self._build_menus_and_toolbar()
        self._connect()
        self._apply_icons()
        self.resize(1280, 820)
        self._restore_preferences()
        self.refresh_model_list()
        self._update_actions()

    # ================================================================================== construction
    def _build_widgets(self) -> None:
        self.model_panel = ModelPanel()
        self.generate_panel = GeneratePanel()

        sidebar = QWidget()
        sidebar.setObjectName("sidebar")
        side = QVBoxLayout(sidebar)
        side.setContentsMargins(10, 10, 6, 10)
        side.setSpacing(10)
        model_box = QGroupBox("Model")
        QVBoxLayout(model_box).addWidget(self.model_panel)
        gen_box = QGroupBox("Generate")
        QVBoxLayout(gen_box).addWidget(self.generate_panel)
        side.addWidget(model_box)
        side.addWidget(gen_box)
        side.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(sidebar)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(sidebar.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        scroll.setMaximumWidth(440)
        self.sidebar = scroll

        # Roll area: title line with zoom buttons, the view, the transport.
        self.roll_area = RollArea()
        ra = self.roll_area
        self.roll_view = ra.roll_view  # the large roll is the editor (app/ui/roll_editor.py)
        self.edit_bar = ra.edit_bar
        self.transport = ra.transport
        self.piece_title, self.piece_info = ra.piece_title, ra.piece_info
        self.zoom_out_button, self.zoom_fit_button, self.zoom_in_button = (
            ra.zoom_out_button, ra.zoom_fit_button, ra.zoom_in_button,
        )

        # Batch area: the batch's label and the hint over the gallery.
        self.batch_area = BatchArea()
        self.gallery = self.batch_area.gallery
        self.batch_label, self.batch_hint = self.batch_area.batch_label, self.batch_area.batch_hint
        self.gallery.piece_model.midi_writer = self._write_piece_midi
        self.gallery.piece_model.file_stem = self.piece_file_stem

        self.center_split = QSplitter(Qt.Orientation.Vertical)
        self.center_split.setObjectName("centerSplit")
        self.center_split.addWidget(self.roll_area)
        self.center_split.addWidget(self.batch_area)
        self.center_split.setStretchFactor(0, 3)
        self.center_split.setStretchFactor(1, 2)
        self.center_split.setChildrenCollapsible(False)
        self.center_split.setSizes([470, 300])

        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.setObjectName("mainSplit")
        self.main_split.addWidget(self.sidebar)
        self.main_split.addWidget(self.center_split)
        self.main_split.setStretchFactor(1, 1)
        self.main_split.setChildrenCollapsible(False)
        self.main_split.setSizes([320, 960])
        self.setCentralWidget(self.main_split)

        sb = self.statusBar()
        self.tasks = TaskIndicator()
        self.model_status = QLabel("")
        self.model_status.setObjectName("modelStatus")
        # Audio problems live here (a permanent place), never in the transient message of the status bar;
        # a click shows the whole check.
        self.audio_label = QToolButton()
        self.audio_label.setText("Audio: checking…")
        self.audio_label.setObjectName("audioLabel")
        self.audio_label.setAutoRaise(True)
        self.audio_label.clicked.connect(self._show_audio_details)
        sb.addPermanentWidget(self.tasks)
        sb.addPermanentWidget(self.model_status)
        # while a task shows its progress the model's name (also on top of the sidebar) makes room for it
        self.tasks.changed.connect(lambda n: self.model_status.setVisible(n == 0))
        sb.addPermanentWidget(self.audio_label)

    def _connect(self) -> None:
        mp, gp = self.model_panel, self.generate_panel
        mp.load_requested.connect(self.load_model)
        mp.open_requested.connect(self.open_checkpoint_dialog)
        gp.generate_requested.connect(self.generate)
        gp.cancel_requested.connect(self.cancel_generation)
        gp.key.currentIndexChanged.connect(lambda _i: self.set_batch_key(gp.key_choice()))
        self.gallery.piece_selected.connect(self._show_piece)
        self.gallery.selection_changed.connect(lambda _p: self._update_actions())
        self.gallery.doubleClicked.connect(lambda _i: self.play() if self.transport.audio_available else None)
        self.roll_view.hovered.connect(self._hover)
        tr = self.transport
        tr.play_requested.connect(self.play)
        tr.stop_requested.connect(self.stop)
        tr.loop_toggled.connect(self.playback.set_loop)
        tr.program_changed.connect(self._program_changed)
        tr.tempo_changed.connect(self._tempo_changed)
        tr.dynamics_changed.connect(self._dynamics_changed)
        self.edits.status.connect(self.status)
        self.edits.error.connect(self.show_error)
        self.edits.candidates_ready.connect(self.add_pieces)
        self.edits.piece_changed.connect(self._piece_edited)
        self.edits.running_changed.connect(lambda _r: self._update_edit_actions())
        self.roll_view.edited.connect(lambda _label: self._update_edit_actions())
        self.roll_view.region_changed.connect(lambda _r: self._update_edit_actions())
        ml = self.model_loader
        ml.loading.connect(self._model_loading)
        ml.model_loaded.connect(self.set_model)
        ml.model_failed.connect(self._model_error)
        ml.idle.connect(self._model_load_finished)
        gen = self.generator
        gen.started.connect(self._generation_started)
        gen.progress.connect(lambda done, total, _message: self.generate_panel.set_progress(done, total))
        gen.idle.connect(self._generation_idle)
        gen.batch_ready.connect(self._show_batch)
        gen.error.connect(self.show_error)
        gen.cancelled.connect(lambda: self.status("Generation cancelled", 5000))
        ed = self.editor
        ed.pieces_ready.connect(self._pieces_ready)
        ed.scored.connect(self._scored)
        ed.status.connect(self.status)
        ed.error.connect(self.show_error)
        pb = self.playback
        pb.position_changed.connect(self._playback_position)
        pb.stopped.connect(self._playback_stopped)
        pb.started.connect(self._playback_started)
        pb.preparing.connect(self._playback_preparing)
        pb.unavailable.connect(self._audio_unavailable)
        pb.error.connect(lambda m: self.show_error("Playback", m))

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self._apply_icons()
        super().changeEvent(event)

    def _restore_preferences(self) -> None:
        self.transport.tempo.setValue(self.settings.tempo)
        self.transport.set_program(self.settings.program)
        self.transport.velocity.setValue(self.settings.velocity)
        self.transport.humanize.setChecked(self.settings.humanize)
        theme = self.settings.theme
        for mode, act in self.act_theme.items():
            act.setChecked(mode == theme)
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        for key, split in (("ui/main_split", self.main_split), ("ui/center_split", self.center_split)):
            value = self.settings.q.value(key)
            if value is not None:
                split.restoreState(value)

    # ================================================================================== messages
    def status(self, text: str, timeout_ms: int = 0) -> None:
        self.last_status = text
        self.statusBar().showMessage(text, timeout_ms)

    def show_error(self, title: str, text: str) -> None:
        """Tell the user what went wrong (a non-blocking message box) and keep going."""
        self.last_error = text
        self.status(text.splitlines()[0] if text else title, 15000)
        self.error_shown.emit(text)
        if self.interactive:
            box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
            box.setObjectName("errorBox")
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

    def run_task(self, fn, text: str, on_result, error_title: str = "Error") -> Worker:
        """Run ``fn(progress=..., cancel=...)`` on a file worker, shown with progress and Cancel in the status bar.

        ``progress(done, total, message)`` and ``cancel() -> bool`` are handed to ``fn``; its result goes to
        ``on_result`` on the UI thread, a failure to an error message titled ``error_title``.
        """
        holder: dict[str, Worker] = {}

        def job():
            worker = holder["worker"]
            try:
                return fn(progress=worker.signals.progress.emit, cancel=lambda: worker.is_cancelled)
            except jobs.Cancelled:
                raise
            except (OSError, RuntimeError, LookupError) as exc:  # file, audio, MIDI errors: their message
                raise ValueError(str(exc) or type(exc).__name__) from exc
            except Exception as exc:
                if type(exc).__name__ in USER_ERRORS:
                    raise ValueError(str(exc)) from exc
                raise

        worker = Worker(job)
        holder["worker"] = worker
        worker.signals.result.connect(on_result)
        worker.signals.error.connect(lambda m: self.show_error(error_title, m))
        worker.signals.cancelled.connect(lambda: self.status(f"Cancelled: {text.rstrip('…')}", 6000))
        self.tasks.track(worker, text)
        self.io_workers.start(worker)
        return worker

    def _hover(self, text: str) -> None:
        if text:
            self.statusBar().showMessage(text, 3000)

    # ================================================================================== models
    def refresh_model_list(self) -> None:
        shipped = models.discover_models(self.models_dir)
        own = models.discover_user_models(self.user_models_dir)
        recent = []
        for p in self.settings.recent_models:
            if Path(p).is_file() and not self._is_managed(Path(p)):
                recent.append(models.read_model_info(p))
        training = [i for i in self.training_models.values() if i.path.is_file()]
        self.model_panel.set_models(shipped, recent, own, training)
        if self.loaded is not None:
            self.model_panel.set_current(self.loaded.info)

    def _is_managed(self, path: Path) -> bool:
        """A run's checkpoint or one of the user's models: listed in its own section, not under recent."""
        key = _resolved(path)
        return key in self.training_models or _resolved(path.parent) == _resolved(self.user_models_dir)

    def default_model(self) -> Path | None:
        return models.default_model_path(self.models_dir)

    def load_model(self, path: Path | str) -> Worker | None:
        """Load a checkpoint in the background (:class:`ModelLoader`); on failure the previous model stays in use.
        None while another load runs."""
        return self.model_loader.load(path)

    def _model_loading(self, path: Path) -> None:
        self.model_panel.set_busy(True)
        name = self._model_name(path)
        self.model_panel.set_loading(name)
        self.model_status.setText(f"Loading {name}…")
        self.status(f"Loading {name}…")

    def _model_name(self, path: Path) -> str:
        """The label the model list shows for ``path`` (its file name when it is not listed)."""
        try:
            key = path.resolve()
        except OSError:
            key = path
        for info in self.model_panel.items():
            try:
                if info.path.resolve() == key:
                    return info.label
            except OSError:
                continue
        return path.name

    def _model_load_finished(self) -> None:
        self.model_panel.set_busy(False)
        self._update_actions()

    def set_model(self, loaded: LoadedModel) -> None:
        """Use ``loaded`` from now on (also callable directly with a model loaded elsewhere)."""
        training = self.training_models.get(_resolved(loaded.path))
        if training is not None:  # a run's best checkpoint: shown as "NAME (training)"
            loaded.info = replace(training, n_params=loaded.info.n_params)
        changed = self.loaded is None or _resolved(self.loaded.path) != _resolved(loaded.path)
        self.loaded = loaded
        info: ModelInfo = loaded.info
        self.model_panel.set_current(info)
        self.generate_panel.set_model_limits(loaded.steps_per_beat, loaded.max_len)
        if changed:  # a training run's newer best checkpoint keeps what the user set
            self.generate_panel.set_recommended(loaded.recommended())
        self.gallery.set_steps_per_beat(loaded.steps_per_beat)
        self.edit_bar.set_steps_per_beat(loaded.steps_per_beat)
        from app.pitchspace import space_of
        from lnf_core.dataspace import meter_fits

        space = space_of(loaded)
        if meter_fits(space.meter, loaded.steps_per_beat):
            self.generate_panel.set_meter(space.meter)  # what the training data implies
        self.model_status.setText(f"Model: {info.label}")
        self.model_status.setToolTip(f"{loaded.path}\nData space: {space.describe()}"
                                     + (f"\n{space.note}" if space.note else ""))
        self.settings.last_model = str(loaded.path)
        if not info.shipped and not self._is_managed(loaded.path):
            self.settings.add_recent_model(str(loaded.path))
            self.refresh_model_list()
            self.model_panel.set_current(info)
        self.setWindowTitle(f"{info.label} — {APP_NAME}")
        note = f" · {space.note}" if space.source != "measured" and space.note else ""
        self.status(f"Loaded {info.label} ({format_ms(loaded.load_seconds)}) · data: {space.describe()}{note}", 10000)
        self._update_actions()
        self.model_loaded.emit(loaded)

    def _model_error(self, path: Path, message: str) -> None:
        self.model_panel.set_loading(None)
        self.model_status.setText(f"Model: {self.loaded.label}" if self.loaded else "No model")
        keep = f"\n\nStill using {self.loaded.label}." if self.loaded else ""
        self.show_error("Cannot open model", message + keep)
        self.model_failed.emit(message)

    def open_checkpoint_dialog(self) -> None:
        start = str(self.models_dir if self.models_dir.is_dir() else Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self, "Open checkpoint", start, "LNF checkpoints (*.lnf);;All files (*)"
        )
        if path:
            self.load_model(path)

    # ================================================================================== generation
    def generate(self, settings: GenerationSettings | None = None) -> Worker | None:
        """Sample a batch in a worker; the gallery fills when it is done."""
        if settings is None:
            settings = self.generate_panel.settings()
        return self.generator.generate(self.loaded, settings)

    def cancel_generation(self) -> None:
        if self.generator.cancel():
            self.status("Cancelling…")

    @property
    def last_result(self) -> GenerationResult | None:
        """The last finished batch."""
        return self.generator.last_result

    def _generation_started(self, settings: GenerationSettings) -> None:
        self.generate_panel.set_running(True)
        self._update_actions()
        self.status(f"Sampling {settings.n} pieces…")

    def _show_batch(self, result: GenerationResult) -> None:
        from app.pitchspace import space_of

        self._batch_space = space_of(self.loaded) if self.loaded is not None else None  # the space it was made in
        s = result.settings
        self._remember_model(result.pieces)
        self.gallery.set_pieces(result.pieces)
        length = "lengths from p(T)" if s.length is None else f"{s.length} steps"
        best = f" · best of {s.best_of} each" if s.best_of > 1 else ""
        meter = f" · {s.meter[0]}/{s.meter[1]}" if s.meter else ""
        self.batch_label.setText(
            f"Batch · {len(result.pieces)} pieces{best} · {length}{meter} · "
            f"{self._batch_key_text(result.pieces, s.key)} · temperature {s.temperature:g}"
            f"{f' · notes {s.key_temperature:g}' if s.key_temperature != 1.0 else ''}"
            f"{f' · legato {s.continuity:g}' if s.continuity > 0 else ''} · seed {s.seed}"
        )
        noun = "piece" if len(result.pieces) == 1 else "pieces"
        self.status(f"Generated {len(result.pieces)} {noun} in {format_ms(result.seconds)}")
        self.generate_panel.set_summary(f"Last batch: {len(result.pieces)} {noun} in {format_ms(result.seconds)}")
        self.batch_ready.emit(result)

    @staticmethod
    def _batch_key_text(pieces: Sequence[Piece], choice: str) -> str:
        tonics = sorted({p.key_name.split()[0] for p in pieces if p.key_name})
        which = "key as trained" if choice == "trained" else ("random key" if choice == "random" else "key")
        return f"{which} {'/'.join(tonics)}" if tonics else which

    def set_batch_key(self, choice: str) -> None:
        """Transpose the generated pieces of the current batch to a key ("trained", "random" or a tonic); the mode
        stays what the model sampled. Pieces from files, variations and interpolations keep their key."""
        space = getattr(self, "_batch_space", None)
        if space is None or self.last_result is None:
            return
        from app.pitchspace import retranspose

        seed = self.last_result.settings.seed if choice != "random" else self.generate_panel.seed.value() + 7919
        changed = [p for p in self.last_result.pieces if p.transpose is not None]
        for piece in changed:
            retranspose(space, piece, choice, seed)
            piece.nll_per_step = piece.typicality = piece.placement = None  # scores were for the old key
            self.edits.docs.pop(piece.uid, None)  # the editor's notes of the piece are rebuilt at the new pitch
        if not changed:
            return
        if self.playback.is_playing or self.playback.is_preparing:
            self.stop()
        self.gallery.set_pieces(self.gallery.pieces())  # redraw the thumbnails
        self._show_piece(self.current_piece())
        keys = sorted({p.key_name for p in changed if p.key_name})
        self.status(f"Batch transposed: {', '.join(keys)}", 6000)

    def _generation_idle(self) -> None:
        self.generate_panel.set_running(False)
        self._update_actions()

    @property
    def is_generating(self) -> bool:
        return self.generator.busy

    # ================================================================================== pieces
    def _show_piece(self, piece: Piece | None) -> None:
        busy = self.playback.is_playing or self.playback.is_preparing
        if busy and (piece is None or piece.uid != self._playing_uid):
            self.stop()
        if piece is None:
            self.roll_view.set_roll(None)
            self.piece_title.setText("No piece selected")
            self.piece_info.setText("")
        else:
            from lnf_core.dataspace import grid_for

            spb = piece.steps_per_quarter
            beat, per_bar = grid_for(piece.meter or (4, 4), spb)
            self.roll_view.set_roll(piece.roll, beat, beats_per_bar=per_bar)
            self.edit_bar.set_steps_per_beat(spb, beat * per_bar)  # snap to the piece's beats and bars
            self.piece_title.setText(piece.title)
            self.piece_info.setText(self._describe(piece, spb))
            self.piece_info.setToolTip(self._describe(piece, spb))
        self.edits.show_piece(piece)
        self.transport.set_has_piece(piece is not None)
        dur = piece.length * self.step_seconds(piece) if piece is not None else 0.0
        self.transport.set_position(0.0, dur)
        self._update_actions()

    def _describe(self, piece: Piece, spb: int) -> str:
        from lnf_core.dataspace import bar_steps

        meter = piece.meter or (4, 4)
        bars = piece.length / bar_steps(meter, spb)
        parts = [f"{piece.length} steps ({bars:.3g} bars of {meter[0]}/{meter[1]})"]
        if piece.key_name:
            parts.append(piece.key_name)
        parts.append(f"{note_count(piece.roll)} notes")
        if piece.seed is not None and piece.source == "generated":
            parts.append(f"seed {piece.seed}")
        if piece.placement:
            parts.append(piece.placement)
        if piece.nll_per_step is not None:
            parts.append(f"NLL {piece.nll_per_step:.2f} nats/step")
        if piece.typicality is not None:
            from app.pitchspace import format_typicality

            parts.append(f"typicality {format_typicality(piece.typicality)}")
        if piece.note:
            parts.append(piece.note)
        return " · ".join(parts)

    def _piece_edited(self, piece: Piece) -> None:
        """An edit changed the shown version: its description and the transport's duration follow."""
        if self.current_piece() is piece:
            self.piece_info.setText(self._describe(piece, piece.steps_per_quarter))
        self._update_actions()

    def current_piece(self) -> Piece | None:
        return self.gallery.current_piece()

    def _selected_or_current(self) -> list[Piece]:
        sel = self.gallery.selected_pieces()
        if sel:
            return sel
        cur = self.current_piece()
        return [cur] if cur else []

    def _remember_model(self, pieces: Sequence[Piece]) -> None:
        if self.loaded is not None:
            for p in pieces:
                self._piece_models.setdefault(p.uid, self.loaded.path.stem)

    def piece_file_stem(self, piece: Piece) -> str:
        """File name (no suffix) for exporting or dragging ``piece``: model, seed and piece, e.g.
        ``jsb-iaf-scf-seed123-1``."""
        return piece_stem(piece, self._piece_models.get(piece.uid))

    def add_pieces(self, pieces: Sequence[Piece], label: str | None = None) -> None:
        """Append pieces (variations, interpolations, MIDI files) to the gallery and select the first."""
        self._remember_model(pieces)
        self.gallery.append_pieces(list(pieces))
        if label:
            self.batch_label.setText(label)
        self.pieces_added.emit(list(pieces))

    def _update_actions(self) -> None:
        has_model = self.loaded is not None
        busy = self.generator.busy
        piece = self.current_piece()
        sel = self.gallery.selected_pieces()
        latent = has_model and self.loaded.has_latent
        self.act_generate.setEnabled(has_model and not busy)
        self.act_reproduce.setEnabled(has_model and not busy and self.generate_panel.last_settings is not None)
        self.act_cancel.setEnabled(busy)
        self.act_variations.setEnabled(latent and piece is not None)
        self.act_interpolate.setEnabled(latent and len(sel) == 2)
        self.act_score.setEnabled(has_model and piece is not None)
        has_pieces = bool(self.gallery.pieces())
        self.act_export_midi.setEnabled(piece is not None)
        self.act_export_all.setEnabled(has_pieces)
        can_render = self.audio_status is None or self.audio_status.can_render
        self.act_export_wav.setEnabled(piece is not None and can_render)
        self.act_export_all_wav.setEnabled(has_pieces and can_render)
        self.act_export_png.setEnabled(piece is not None)
        self.act_play.setEnabled(piece is not None and self.transport.audio_available)
        self.generate_panel.set_model_limits(
            self.loaded.steps_per_beat if has_model else 1, self.loaded.max_len if has_model else None, has_model
        )
        self._update_edit_actions()

    # ================================================================================== latent edits
    def make_variations(self, n: int | None = None, temperature: float | None = None) -> Worker | None:
        """Pieces near the selected one, sampled around its posterior (count/temperature/seed from the panel)."""
        piece = self.current_piece()
        if self.loaded is None or piece is None:
            return None
        s = self.generate_panel.settings()
        temperature = s.temperature if temperature is None else temperature
        return self.editor.variations(self.loaded, piece, n or s.n, temperature, s.seed, s.decode)

    def interpolate_dialog(self) -> None:
        steps, ok = QInputDialog.getInt(self, "Interpolate", "Number of steps (including both ends):", 8, 3, 32)
        if ok:
            self.interpolate(steps)

    def interpolate(self, steps: int = 8, spherical: bool = False) -> Worker | None:
        """Decode a path through latent space between the two selected pieces."""
        sel = self.gallery.selected_pieces()
        if self.loaded is None or len(sel) != 2:
            self.show_error("Interpolate", "Select exactly two pieces in the gallery (Ctrl-click).")
            return None
        return self.editor.interpolate(self.loaded, sel[0], sel[1], steps, spherical)

    def score_current(self) -> Worker | None:
        piece = self.current_piece()
        if piece is None or self.loaded is None:
            return None
        return self.editor.score(self.loaded, piece)

    def _pieces_ready(self, pieces: list, caption: str, status: str) -> None:
        self.add_pieces(pieces, caption)
        self.status(status)

    def _scored(self, piece: Piece, _score) -> None:
        self.gallery.viewport().update()
        if self.current_piece() is piece:
            self.piece_info.setText(self._describe(piece, piece.steps_per_quarter))

    def open_midi_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open MIDI file", str(Path.home()), "MIDI files (*.mid *.midi);;All files (*)"
        )
        if path:
            self.open_midi(path)

    def open_midi(self, path: str | Path, take_bars: int | None = None, meter: tuple[int, int] | None = None
                  ) -> Worker:
        """Read a MIDI file on a worker, show it as a roll at sounding pitch and score it under the current model
        (in the model's key and register: :mod:`app.pitchspace`).

        The file is read on the model's grid and quantisation, with its time and key signatures. A file longer than
        :data:`app.midi_import.MAX_OPEN_STEPS` is not opened whole: the window offers its first bars instead (or
        opens the first ``take_bars`` bars, of ``meter`` when given, else 4/4).
        """
        from app import midi_import

        path = Path(path)
        loaded = self.loaded
        spb = loaded.steps_per_beat if loaded else 1
        quantise = "cover"
        if loaded is not None:
            from app.pitchspace import space_of

            quantise = space_of(loaded).quantisation
        take = None if take_bars is None else max(1, int(take_bars)) * midi_import.bar_steps_of(meter, spb)

        def job(progress=None, cancel=None):
            return midi_import.read_midi_piece(path, spb, take_steps=take, quantise=quantise)

        note = "" if take is None else f" (the first {take_bars:,} bars)"
        return self.run_task(job, f"Opening {path.name}…", lambda out: self._midi_read(path, out, note),
                             "Cannot open MIDI file")

    def _midi_read(self, path: Path, outcome, note: str = "") -> None:
        from app.midi_import import MidiTooLong

        if not isinstance(outcome, MidiTooLong):
            self.editor.add_midi(outcome, path, self.loaded, note)
            return
        too_long: MidiTooLong = outcome
        bars = too_long.max_bars
        question = f"{too_long.message}\n\nOpen the first {bars:,} bars?"
        self.last_error = too_long.message
        self.status(too_long.message, 15000)
        self.error_shown.emit(too_long.message)
        if not self.interactive:
            return
        box = QMessageBox(QMessageBox.Icon.Question, "MIDI file too long", question,
                          QMessageBox.StandardButton.Cancel, self)
        box.setObjectName("tooLongBox")
        take = box.addButton(f"Open the first {bars:,} bars", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(take)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(_result: int) -> None:
            if box.clickedButton() is take:
                first = too_long.first_piece(bars)
                if first is not None:
                    self.editor.add_midi(first, path, self.loaded, f" (the first {bars:,} bars)")
                else:
                    self.open_midi(path, take_bars=bars, meter=too_long.meter)

        box.finished.connect(answered)
        box.open()

    # ================================================================================== playback
    def step_seconds(self, piece: Piece | None = None) -> float:
        """Seconds per step of a piece (the current one by default) at the transport's tempo: on the piece's own
        grid, whichever model is loaded now."""
        piece = piece or self.current_piece()
        spb = piece.steps_per_quarter if piece is not None else (self.loaded.steps_per_beat if self.loaded else 1)
        return 60.0 / (self.transport.current_tempo() * spb)

    HUMANIZE = 0.5  # velocity spread of "Humanize": standard deviation 10 around the chosen velocity

    def midi_options(self, piece: Piece | None = None) -> dict:
        """How a roll becomes MIDI for playback and every export (``lnf_core.pianoroll.roll_to_midi``): tempo,
        instrument and dynamics from the transport; the grid, time signature and key signature of ``piece`` (the
        current one by default)."""
        piece = piece or self.current_piece()
        humanize = self.transport.humanized()
        options = {
            "tempo_bpm": float(self.transport.current_tempo()),
            "steps_per_beat": piece.steps_per_quarter if piece is not None else
            (self.loaded.steps_per_beat if self.loaded else 1),
            "program": self.transport.current_program(),
            "velocity": self.transport.current_velocity(),
            # a fixed seed: a piece gets the same dynamics when played, exported or played again
            "humanize": self.HUMANIZE if humanize else 0.0,
            "seed": 0,
        }
        if piece is not None:
            from app.pitchspace import key_signature_of
            from lnf_core.dataspace import meter_fits

            if piece.meter and meter_fits(piece.meter, options["steps_per_beat"]):
                options["time_signature"] = tuple(piece.meter)
            key = key_signature_of(piece)
            if key is not None:
                options["key"] = key
        return options

    def play(self) -> bool:
        """Start playing the current piece in the background (True when it was started)."""
        piece = self.current_piece()
        if piece is None:
            return False
        if not self.transport.audio_available:
            self.status(f"Playback unavailable: {self.transport.unavailable_reason}", 10000)
            return False
        from app.editing import roll_midi

        velocities = None if piece.velocities is None else piece.velocities.copy()
        self._playing_uid = piece.uid
        self._playing_title = piece.title
        self.status(f"Preparing {piece.title}…")
        return self.playback.play(
            midi_factory(piece.roll, roll_midi, velocities=velocities, **self.midi_options(piece)), piece.length,
            self.step_seconds(piece),
            self.transport.current_program(), loop=self.transport.loop_button.isChecked(),
        )

    def stop(self) -> None:
        self.playback.stop()

    def _playback_preparing(self, busy: bool) -> None:
        if busy:
            self.transport.stop_button.setEnabled(True)  # Stop also cancels a piece still being prepared
            self.transport.play_button.setEnabled(False)

    def _playback_started(self, _duration: float) -> None:
        self.transport.set_playing(True)
        self.status(f"Playing {getattr(self, '_playing_title', '')} (started after "
                    f"{format_ms(self.playback.last_render_seconds)})", 4000)

    def _playback_position(self, step: float, seconds: float, duration: float) -> None:
        self.roll_view.set_playhead(step)
        self.transport.set_position(seconds, duration)

    def _playback_stopped(self) -> None:
        self.roll_view.set_playhead(None)
        self.transport.set_playing(False)
        self._playing_uid = None

    def _program_changed(self, program: int) -> None:
        self.settings.program = program

    def _dynamics_changed(self) -> None:
        self.settings.velocity = self.transport.current_velocity()
        self.settings.humanize = self.transport.humanized()

    def _tempo_changed(self, tempo: int) -> None:
        self.settings.tempo = tempo
        piece = self.current_piece()
        if piece is not None and not self.playback.is_playing:
            self.transport.set_position(0.0, piece.length * self.step_seconds(piece))

    def check_audio(self) -> Worker:
        """Find out on a worker whether sound works (the first check imports FluidSynth and PortAudio, about
        0.3 s); then disable what cannot work and say how to fix it. :attr:`audio_checked` follows."""
        playback = self.playback

        def job(progress=None, cancel=None):
            try:
                return ("ok", playback.check())
            except AudioUnavailable as exc:
                return ("unavailable", str(exc))
            except Exception as exc:  # the check itself must never take the app down
                return ("unavailable", f"Audio check failed: {exc}")

        worker = Worker(job)
        worker.signals.result.connect(self._audio_checked)
        self.io_workers.start(worker)
        return worker

    def _audio_checked(self, outcome) -> None:
        kind, value = outcome
        if kind != "ok":
            self.audio_status = None
            self._audio_unavailable(value)
            self.audio_checked.emit(None)
            return
        status = value
        self.audio_status = status
        if status.can_play:
            font = status.soundfont_path.name if status.soundfont_path else "SoundFont"
            self.audio_label.setText(f"Audio: {font}")
            self.audio_label.setToolTip(status.summary())
            self.transport.set_audio_available(True)
        else:
            missing = next(c.message for c in (status.fluidsynth, status.soundfont, status.output) if not c.ok)
            self._audio_unavailable(missing, status.summary())
        self._update_actions()
        self.audio_checked.emit(status)

    def _audio_unavailable(self, message: str, detail: str | None = None) -> None:
        """Sound does not work: say so in the audio place of the status bar (tooltip and a click give the
        details) and on the Play button; the transient status line keeps what it was saying (e.g. Loading…)."""
        self.transport.set_audio_available(False, message)
        self.transport.set_playing(False)
        self.audio_label.setText("⚠ Audio unavailable")
        self.audio_label.setToolTip(f"{detail or message}\n\nClick for details.")
        self._audio_detail = detail or message
        self.act_play.setEnabled(False)
        self.last_error = message

    def _show_audio_details(self) -> None:
        text = getattr(self, "_audio_detail", None) or (self.audio_status.summary() if self.audio_status else "")
        if text and self.interactive:
            box = QMessageBox(QMessageBox.Icon.Information, "Sound", text, QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

    # ================================================================================== export
    def _write_piece_midi(self, piece: Piece, path: Path) -> Path:
        return self.exporter.write_midi(piece, path)

    def export_pieces(self, pieces: Sequence[Piece], folder: str | Path, kinds: Sequence[str] = ("mid",)) -> list[Path]:
        """Write pieces as numbered files in ``folder`` (MIDI and/or WAV) right now; returns the paths. (The
        menu actions do this on a worker: :meth:`export_dialog`.)"""
        return self.exporter.export_pieces(pieces, folder, kinds)

    def export_selected_midi_dialog(self) -> None:
        self.exporter.midi_dialog(self._selected_or_current())

    def export_dialog(self, all_pieces: bool, kinds: Sequence[str]) -> None:
        self.exporter.folder_dialog(self.gallery.pieces() if all_pieces else self._selected_or_current(), kinds)

    def export_png(self, path: str | Path) -> Path:
        """The large roll (whole piece, with keyboard and bar ruler, at most 16,000 px wide) as a PNG, now."""
        img = self.roll_view.render_image()
        if not img.save(str(path), "PNG"):
            raise OSError(f"Could not write {path}: check that the folder exists and is writable")
        return Path(path)

    def export_png_dialog(self) -> None:
        self.exporter.png_dialog(self.current_piece(), self.roll_view.image_renderer())

    # ================================================================================== settings, theme
    def settings_dialog(self) -> None:
        from app.ui.settings_dialog import SettingsDialog

        dlg = SettingsDialog(self.settings, self)
        if dlg.exec():
            dlg.apply()
            self.playback.set_soundfont(self.settings.soundfont or None)
            self.set_theme(self.settings.theme)
            self.check_audio()

    def set_theme(self, mode: str) -> None:
        self.settings.theme = mode
        app = QApplication.instance()
        if app is not None:
            apply_theme(app, mode)
        for m, act in self.act_theme.items():
            act.setChecked(m == mode)

    def about(self) -> None:
        QMessageBox.about(
            self, "About LNF Studio",
            "<h3>LNF Studio</h3><p>Polyphonic music from latent normalizing flows "
            "(Ziegler &amp; Rush, <i>Latent Normalizing Flows for Discrete Sequences</i>, ICML 2019).</p>"
            "<p>A piece is a piano roll x<sub>1..T</sub>; the app samples T from p(T), z from the flow prior "
            "and every frame from the decoder p(x<sub>t</sub> | z, T).</p>",
        )

    # ================================================================================== drag and drop in
    MIDI_SUFFIXES = (".mid", ".midi")

    def _droppable(self, event) -> list[Path]:
        if event.source() is not None or not event.mimeData().hasUrls():
            return []  # our own drags (gallery -> desktop) are not re-imported
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        return [p for p in paths if p.suffix.lower() in (*self.MIDI_SUFFIXES, models.CHECKPOINT_SUFFIX)]

    def dragEnterEvent(self, event) -> None:
        if self._droppable(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:
        paths = self._droppable(event)
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def open_paths(self, paths: Sequence[Path | str]) -> None:
        """Open dropped files: MIDI files become pieces (scored by the model), a checkpoint is loaded."""
        for path in map(Path, paths):
            if path.suffix.lower() == models.CHECKPOINT_SUFFIX:
                self.load_model(path)
            elif path.suffix.lower() in self.MIDI_SUFFIXES:
                self.open_midi(path)

    # ================================================================================== training
    def open_train_window(self):
        """Show the Train window (made on first use)."""
        if self.train_window is None:
            from app.ui.train_window import TrainWindow

            tw = TrainWindow(self, runs_dir=self.runs_dir, models_dir=self.user_models_dir,
                             interactive=self.interactive)
            tw.checkpoint_improved.connect(self._training_checkpoint)
            tw.use_requested.connect(self.load_model)
            tw.model_installed.connect(self._training_installed)
            tw.run_ended.connect(self._training_ended)
            self.train_window = tw
        self.train_window.show()
        self.train_window.raise_()
        self.train_window.activateWindow()
        return self.train_window

    @property
    def is_training(self) -> bool:
        return self.train_window is not None and self.train_window.active

    def _training_checkpoint(self, path: Path, label: str) -> None:
        """A run saved a better ``best.lnf``: list it as a training model; reload it if it is in use."""
        path = Path(path)
        base = models.read_model_info(path)
        note = label[label.find("(") + 1:-1] if "(" in label else "training"
        name = label.split(" (")[0]
        self.training_models[_resolved(path)] = replace(base, label=f"{name} (training)", training=True, note=note)
        self.refresh_model_list()
        if self.loaded is not None and _resolved(self.loaded.path) == _resolved(path) and not self.is_generating:
            self.status(f"{name}: a better checkpoint ({note}); reloading it", 6000)
            self.load_model(path)

    def _training_installed(self, path: Path) -> None:
        """The run finished and its model is in the user's model folder: list it there; switch to it if the
        run's checkpoint was in use."""
        run_best = self.train_window.run_dir / "best.lnf" if self.train_window and self.train_window.run_dir else None
        was_in_use = (self.loaded is not None and run_best is not None
                      and _resolved(self.loaded.path) == _resolved(run_best))
        if run_best is not None:
            self.training_models.pop(_resolved(run_best), None)
        self.refresh_model_list()
        self.status(f"Training finished: {Path(path).stem} is in your models", 10000)
        if was_in_use:
            self.load_model(path)

    def _training_ended(self, state: str) -> None:
        if state != "finished":
            tw = self.train_window
            if tw is not None and tw.run_dir is not None:
                info = self.training_models.get(_resolved(tw.run_dir / "best.lnf"))
                if info is not None:  # keep it usable, but say the run is not training now
                    self.training_models[_resolved(tw.run_dir / "best.lnf")] = replace(
                        info, label=info.label.replace("(training)", f"({state})"), note=state)
            self.refresh_model_list()

    def _confirm_close_while_training(self) -> str:
        """'stop', 'keep' or 'cancel' (do not close)."""
        policy = self.close_policy
        if policy != "ask":
            return policy
        box = QMessageBox(QMessageBox.Icon.Question, "Training is running",
                          "A model is still training. Stop it (a checkpoint is saved and you can resume later) or "
                          "keep it training in the background? Its model appears in your models when it is done.",
                          QMessageBox.StandardButton.NoButton, self)
        stop = box.addButton("Stop training", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep training in the background", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.exec()
        clicked = box.clickedButton()
        return "stop" if clicked is stop else "keep" if clicked is keep else "cancel"

    # ================================================================================== lifetime
    def closeEvent(self, event: QCloseEvent) -> None:
        if self.is_training:
            choice = self._confirm_close_while_training()
            if choice == "cancel":
                event.ignore()
                return
            if choice == "keep":
                self.train_window.detach()
            else:
                self.status("Stopping the training run…")
                QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
                try:
                    self.train_window.stop_and_wait(30.0)
                finally:
                    QApplication.restoreOverrideCursor()
        if self.train_window is not None:
            self.train_window.close()
        self.playback.shutdown()
        self.generator.cancel()
        self.tasks.cancel_all()
        self.workers.shutdown(3000)
        self.io_workers.shutdown(3000)
        self.gallery.piece_model.cleanup()
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.settings.q.setValue("ui/main_split", self.main_split.saveState())
        self.settings.q.setValue("ui/center_split", self.center_split.saveState())
        self.settings.sync()
        super().closeEvent(event)

