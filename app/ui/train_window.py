"""The Train window: train a model on a MIDI folder (or a dataset) without a terminal, and watch it learn.

The run itself is a separate process tree (:mod:`app.training`): this window writes the run's ``studio.json``,
starts the job, and then only reads files: ``metrics.jsonl`` for the curves and the progress bar,
``output.log`` for the log, ``studio.json`` for the state and the result, ``best.lnf`` to offer the model
while it trains. A timer polls them a few times a second, so the rest of the app keeps working.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QColor, QFont, QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app import models, training
from app.training import Curves, LineFollower, MetricsFollower, TrainingProcess, TrainRequest
from app.ui.theme import is_dark
from lnf_core.config import PRIOR_LABELS

FOLDER = "__folder__"
POLL_MS = 250
PRESET_TEXT = {
    "tiny": "tiny — a quick check (seconds)",
    "small": "small — good results on a CPU",
    "paper": "paper — the paper's sizes (hours)",
}
STATE_TEXT = {
    "new": "not started", "starting": "starting…", "running": "training", "cancelling": "stopping…",
    "evaluating": "evaluating on the test split…", "installing": "saving the model…", "cancelled": "cancelled",
    "finished": "finished", "failed": "failed", "external": "running outside the app?",
    "interrupted": "stopped without finishing",
}
# Series -> (legend text, colour, width, symbol); the epoch means are drawn with markers.
STYLE = {
    "train_loss_steps": ("train (every 10 steps)", "#8fb8e8", 1, None),
    "train_loss": ("train (epoch mean)", "#1f77d0", 2, "o"),
    "valid_loss": ("validation −ELBO", "#e8590c", 2, "s"),
    "valid_nll": ("validation NLL (IW)", "#2b9348", 2, "t"),
    "kl_steps": ("KL (every 10 steps)", "#d8a0d8", 1, None),
    "train_kl": ("KL (epoch mean)", "#9c36b5", 2, "o"),
    "beta": ("KL weight", "#888888", 1, None),
}


def _robust_range(values: list[float]) -> tuple[float, float] | None:
    """A y range showing the converged part: early epochs (KL weight near 0) can be far above the rest."""
    if not values:
        return None
    vals = sorted(values)
    lo = vals[0]
    hi = vals[-1] if len(vals) < 6 else vals[int(0.85 * (len(vals) - 1))]
    hi = max(hi, lo + 1e-3)
    pad = 0.08 * (hi - lo)
    return lo - pad, hi + pad


def _full_range(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    lo, hi = min(min(values), 0.0), max(values)
    hi = max(hi, lo + 1e-3)
    return lo, hi + 0.08 * (hi - lo)


class TrainWindow(QWidget):
    """A top-level window; public methods mirror the buttons so tests and the headless mode can drive it."""

    run_started = Signal(object)  # Path: the run folder
    curves_updated = Signal(int)  # points on the curves
    checkpoint_improved = Signal(object, str)  # Path of best.lnf, label for the model panel
    run_ended = Signal(str)  # cancelled | finished | failed
    model_installed = Signal(object)  # Path of the model copied into the user's model folder
    use_requested = Signal(object)  # Path of best.lnf: load it in the main window

    def __init__(self, parent: QWidget | None = None, runs_dir: Path | None = None, models_dir: Path | None = None,
                 data_dir: str | None = None, interactive: bool = True) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("trainWindow")
        self.setWindowTitle("Train a model — LNF Studio")
        self.runs_dir = Path(runs_dir) if runs_dir else training.runs_dir()
        self.models_dir = Path(models_dir) if models_dir else models.user_models_dir()
        self.data_dir = data_dir
        self.interactive = interactive
        self.proc: TrainingProcess | None = None
        self.run_dir: Path | None = None
        self.curves = Curves()
        self.state = "new"
        self.last_error: str | None = None
        self.result_text = ""
        self.first_point_seconds: float | None = None  # Start -> first point on the curves
        self.cancel_seconds: float | None = None  # Cancel -> the process has exited
        self._metrics: MetricsFollower | None = None
        self._log: LineFollower | None = None
        self._best_mtime: float | None = None
        self._started_at: float | None = None
        self._eta: tuple[float, float] | None = None  # (eta seconds, when computed)
        self._x = "epoch"
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)
        self.refresh_data_choices()
        self.refresh_runs()
        self._update_estimate()
        self._update_buttons()
        self.resize(1220, 780)

    # ================================================================================== construction
    def _build(self) -> None:
        root = QHBoxLayout(self)
        root.setContentsMargins(10, 10, 10, 10)
        root.setSpacing(10)

        # ---- left: the form and the runs
        left = QWidget()
        left.setObjectName("trainForm")
        left.setMinimumWidth(330)
        left.setMaximumWidth(380)
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.setSpacing(10)
        box = QGroupBox("New run")
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        self.data_combo = QComboBox()
        self.data_combo.setObjectName("dataCombo")
        self.data_combo.currentIndexChanged.connect(self._data_changed)
        form.addRow("Data", self.data_combo)
        folder_row = QHBoxLayout()
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("a folder of .mid files")
        self.folder_edit.editingFinished.connect(self._update_estimate)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse_folder)
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.browse_button)
        self.folder_widget = QWidget()
        self.folder_widget.setLayout(folder_row)
        folder_row.setContentsMargins(0, 0, 0, 0)
        form.addRow("", self.folder_widget)
        self.data_detail = self._dim_label()
        form.addRow("", self.data_detail)
        self.prior_combo = QComboBox()
        self.prior_combo.setObjectName("priorCombo")
        for prior in training.PRIORS:
            note = " — samples fastest" if prior == "iaf-scf" else ""
            self.prior_combo.addItem(PRIOR_LABELS[prior] + note, prior)
        self.prior_combo.setToolTip("The flow prior. IAF/SCF samples every time step in parallel, so it "
                                    "generates fastest in the app.")
        self.prior_combo.currentIndexChanged.connect(self._update_estimate)
        form.addRow("Prior", self.prior_combo)
        self.emission_combo = QComboBox()
        self.emission_combo.setObjectName("emissionCombo")
        for value, text in (("chords", "Chords — recommended"), ("nade", "NADE — note by note"),
                            ("bernoulli", "Independent — the paper's")):
            self.emission_combo.addItem(text, value)
        self.emission_combo.setToolTip(
            "How the notes sounding at one step are modelled. Chords: every step is one of the chords found in the "
            "training music (any other is still possible), which gives clean harmony and the best likelihood; "
            "independent notes is the paper's choice")
        form.addRow("Notes", self.emission_combo)
        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("presetCombo")
        for preset in training.PRESETS:
            self.preset_combo.addItem(PRESET_TEXT[preset], preset)
        self.preset_combo.setCurrentIndex(training.PRESETS.index("small"))
        self.preset_combo.currentIndexChanged.connect(self._update_estimate)
        form.addRow("Size", self.preset_combo)
        self.estimate_label = self._dim_label()
        self.estimate_label.setObjectName("estimateLabel")
        form.addRow("", self.estimate_label)
        self.threads_spin = QSpinBox()
        self.threads_spin.setRange(1, max(1, os.cpu_count() or 1))
        self.threads_spin.setValue(training.default_threads())
        self.threads_spin.setToolTip("CPU threads for training. Fewer leaves more of the machine to the rest of "
                                     "the app, and training takes longer.")
        self.threads_spin.valueChanged.connect(self._update_estimate)
        form.addRow("Threads", self.threads_spin)
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("nameEdit")
        self.name_edit.setPlaceholderText("my-model")
        self.name_edit.textChanged.connect(self._update_name_hint)
        form.addRow("Name", self.name_edit)
        self.name_hint = self._dim_label()
        form.addRow("", self.name_hint)
        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("startButton")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(lambda: self.start())
        form.addRow("", self.start_button)
        lv.addWidget(box)

        runs_box = QGroupBox("Runs")
        rv = QVBoxLayout(runs_box)
        self.runs_combo = QComboBox()
        self.runs_combo.setObjectName("runsCombo")
        self.runs_combo.activated.connect(self._run_picked)
        rv.addWidget(self.runs_combo)
        self.runs_hint = self._dim_label("Pick a run to see its curves, resume it or use its model.")
        rv.addWidget(self.runs_hint)
        lv.addWidget(runs_box)
        lv.addStretch(1)
        root.addWidget(left)

        # ---- right: the run being watched
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.setSpacing(6)
        head = QHBoxLayout()
        self.run_title = QLabel("No run yet")
        self.run_title.setObjectName("runTitle")
        tf = QFont(self.run_title.font())
        tf.setPointSizeF(tf.pointSizeF() * 1.2)
        tf.setBold(True)
        self.run_title.setFont(tf)
        self.state_label = QLabel("")
        self.state_label.setObjectName("runState")
        head.addWidget(self.run_title)
        head.addWidget(self.state_label)
        head.addStretch(1)
        self.use_button = QPushButton("Use in studio")
        self.use_button.setToolTip("Generate with the best checkpoint so far (it stays in the model panel, "
                                   "marked 'training')")
        self.use_button.clicked.connect(self.use_model)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setToolTip("Stop after the current step; a checkpoint is saved and Resume continues")
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("resumeButton")
        self.resume_button.setToolTip("Continue this run from its last checkpoint")
        self.resume_button.clicked.connect(lambda: self.resume())
        for b in (self.use_button, self.cancel_button, self.resume_button):
            head.addWidget(b)
        rv.addLayout(head)
        self.run_folder_label = self._dim_label("")
        self.run_folder_label.setObjectName("runFolder")
        self.run_folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rv.addWidget(self.run_folder_label)

        self.progress = QProgressBar()
        self.progress.setObjectName("trainProgress")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.progress.setMinimumHeight(22)
        rv.addWidget(self.progress)
        self.result_label = QLabel("")
        self.result_label.setObjectName("resultLabel")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        rv.addWidget(self.result_label)

        axis_row = QHBoxLayout()
        axis_row.addWidget(QLabel("x axis:"))
        self.x_epochs = QRadioButton("epochs")
        self.x_steps = QRadioButton("steps")
        self.x_epochs.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.x_epochs)
        group.addButton(self.x_steps)
        self.x_epochs.toggled.connect(lambda on: self.set_x_axis("epoch" if on else "step"))
        axis_row.addWidget(self.x_epochs)
        axis_row.addWidget(self.x_steps)
        axis_row.addStretch(1)
        self.points_label = self._dim_label()
        self.points_label.setWordWrap(False)
        axis_row.addWidget(self.points_label)
        rv.addLayout(axis_row)

        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        plots = QWidget()
        pl = QHBoxLayout(plots)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.setSpacing(8)
        self.loss_plot = self._plot("Loss (nats per step)")
        self.kl_plot = self._plot("KL term (nats per step)")
        pl.addWidget(self.loss_plot, 3)
        pl.addWidget(self.kl_plot, 2)
        self.plot_items: dict[str, pg.PlotDataItem] = {}
        for name in ("train_loss_steps", "train_loss", "valid_loss", "valid_nll"):
            self.plot_items[name] = self._curve(self.loss_plot, name)
        for name in ("kl_steps", "train_kl", "beta"):
            self.plot_items[name] = self._curve(self.kl_plot, name)
        split.addWidget(plots)

        log_box = QWidget()
        lb = QVBoxLayout(log_box)
        lb.setContentsMargins(0, 4, 0, 0)
        lb.setSpacing(2)
        lb.addWidget(QLabel("Log"))
        self.log_view = QPlainTextEdit()
        self.log_view.setObjectName("trainLog")
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.log_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log_view.setFrameShape(QFrame.Shape.StyledPanel)
        lb.addWidget(self.log_view, 1)
        split.addWidget(log_box)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([430, 220])
        rv.addWidget(split, 1)
        root.addWidget(right, 1)

    def _dim_label(self, text: str = "") -> QLabel:
        label = QLabel(text)
        label.setWordWrap(True)
        label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        return label

    def _plot(self, title: str) -> pg.PlotWidget:
        pal = self.palette()
        fg = pal.color(QPalette.ColorRole.Text)
        w = pg.PlotWidget(background=pal.color(QPalette.ColorRole.Base))
        w.setMinimumSize(QSize(260, 200))
        item = w.getPlotItem()
        item.setTitle(title, color=fg.name(), size="10pt")
        item.showGrid(x=True, y=True, alpha=0.15)
        for side in ("left", "bottom"):
            ax = item.getAxis(side)
            ax.setPen(pg.mkPen(fg))
            ax.setTextPen(pg.mkPen(fg))
        item.setLabel("bottom", "epoch")
        legend = item.addLegend(offset=(-8, 8), labelTextColor=fg.name(), labelTextSize="8pt")
        legend.setBrush(pg.mkBrush(pal.color(QPalette.ColorRole.Base)))
        legend.setPen(pg.mkPen(pal.color(QPalette.ColorRole.Mid)))
        w.setMenuEnabled(False)
        return w

    def _curve(self, plot: pg.PlotWidget, name: str) -> pg.PlotDataItem:
        text, colour, width, symbol = STYLE[name]
        colour = QColor(colour)
        if name in ("train_loss_steps", "kl_steps") and is_dark(self.palette()):
            colour = colour.darker(140)
        pen = pg.mkPen(colour, width=width, style=Qt.PenStyle.DashLine if name == "beta" else Qt.PenStyle.SolidLine)
        kwargs = dict(pen=pen, name=text)
        if symbol:
            kwargs.update(symbol=symbol, symbolSize=6, symbolBrush=colour, symbolPen=pg.mkPen(colour))
        return plot.plot([], [], **kwargs)

    # ================================================================================== the form
    def refresh_data_choices(self) -> None:
        current = self.data_combo.currentData()
        self.data_combo.blockSignals(True)
        self.data_combo.clear()
        for choice in training.dataset_choices(self.data_dir):
            self.data_combo.addItem(f"{choice.title} ({choice.value})", choice.value)
            self.data_combo.setItemData(self.data_combo.count() - 1, f"{choice.detail}\n{choice.path}",
                                        Qt.ItemDataRole.ToolTipRole)
        self.data_combo.addItem("Folder of MIDI files…", FOLDER)
        index = self.data_combo.findData(current) if current else 0
        self.data_combo.setCurrentIndex(max(0, index))
        self.data_combo.blockSignals(False)
        self._data_changed()

    def _data_changed(self, *_args) -> None:
        folder = self.data_combo.currentData() == FOLDER
        self.folder_widget.setVisible(folder)
        self._update_estimate()

    def browse_folder(self) -> None:
        start = self.folder_edit.text() or str(Path.home())
        path = QFileDialog.getExistingDirectory(self, "Folder of MIDI files", start)
        if path:
            self.set_data(path)

    def set_data(self, data: str) -> None:
        """Choose a known dataset by name, or a folder of MIDI files by path."""
        index = self.data_combo.findData(data)
        if index >= 0:
            self.data_combo.setCurrentIndex(index)
        else:
            self.data_combo.setCurrentIndex(self.data_combo.findData(FOLDER))
            self.folder_edit.setText(str(data))
            if not self.name_edit.text():
                self.name_edit.setText(Path(data).name)
        self._update_estimate()

    def set_prior(self, prior: str) -> None:
        self.prior_combo.setCurrentIndex(max(0, self.prior_combo.findData(prior)))

    def set_preset(self, preset: str) -> None:
        self.preset_combo.setCurrentIndex(max(0, self.preset_combo.findData(preset)))

    def data_value(self) -> str:
        value = self.data_combo.currentData()
        return self.folder_edit.text().strip() if value == FOLDER else str(value or "")

    def _update_estimate(self, *_args) -> None:
        preset = self.preset_combo.currentData() or "small"
        prior = self.prior_combo.currentData() or "iaf-scf"
        value = self.data_combo.currentData()
        n_files = None
        if value == FOLDER:
            folder = self.folder_edit.text().strip()
            n_files = training.count_midi_files(folder) if folder else 0
            if not folder:
                self.data_detail.setText("Choose a folder: every .mid/.midi file under it is used (80% for "
                                         "training, 10% validation, 10% test).")
            elif not Path(folder).expanduser().is_dir():
                self.data_detail.setText("This folder does not exist.")
            else:
                self.data_detail.setText(f"{n_files} MIDI file{'s' if n_files != 1 else ''} found (80/10/10 split).")
            dataset = "folder"
        else:
            dataset = str(value or "jsb")
            tip = self.data_combo.currentData(Qt.ItemDataRole.ToolTipRole) or ""
            self.data_detail.setText(tip.split("\n")[0])
            self.data_detail.setToolTip(tip)
        est = training.estimate_time(preset, dataset, prior, n_files)
        text = est.text
        if preset != "tiny" and self.threads_spin.value() < training.MEASURED_CORES:
            text += f"; with {self.threads_spin.value()} thread expect longer"
        self.estimate_label.setText(text)
        self._update_name_hint()

    def _update_name_hint(self, *_args) -> None:
        name = self.name_edit.text().strip() or self.name_edit.placeholderText()
        self.name_hint.setText(f"Run folder: {self.runs_dir / name}\nThe model is added to your models as “{name}”.")

    def request(self, out: str | Path | None = None, max_steps: int | None = None) -> TrainRequest:
        name = self.name_edit.text().strip() or self.name_edit.placeholderText()
        run_dir = Path(out) if out else self.runs_dir / name
        return TrainRequest(data=self.data_value(), out=str(run_dir), prior=self.prior_combo.currentData(),
                            preset=self.preset_combo.currentData(), emission=self.emission_combo.currentData(),
                            name=name if not out else (
                                self.name_edit.text().strip() or run_dir.name),
                            threads=self.threads_spin.value(), max_steps=max_steps, models_dir=str(self.models_dir))

    # ================================================================================== start / cancel / resume
    @property
    def active(self) -> bool:
        return self.proc is not None and self.proc.running

    def start(self, out: str | Path | None = None, max_steps: int | None = None) -> Path | None:
        """Start a new run with the form's settings (``out``: a run folder instead of runs/NAME)."""
        if self.active:
            return None
        req = self.request(out, max_steps)
        try:
            req.validated()
            run_dir = training.prepare_run(req)
        except (ValueError, OSError) as exc:
            self._fail_now(str(exc))
            return None
        self._watch(run_dir)
        self._started_at = time.perf_counter()
        try:
            self.proc = TrainingProcess.start(run_dir)
        except OSError as exc:
            self._fail_now(f"could not start the training process: {exc}")
            return None
        self._set_state("starting")
        self.refresh_runs()
        self.run_started.emit(run_dir)
        return run_dir

    def resume(self, run_dir: str | Path | None = None) -> bool:
        """Continue a cancelled or failed run from its last checkpoint (``python -m train --resume``)."""
        run_dir = Path(run_dir) if run_dir else self.run_dir
        if run_dir is None or self.active or not training.can_resume(run_dir):
            return False
        if run_dir != self.run_dir:
            self._watch(run_dir)
        self._started_at = time.perf_counter()
        self.first_point_seconds = None
        self.cancel_seconds = None
        self.last_error = None
        self._show_result("")
        try:
            self.proc = TrainingProcess.start(run_dir, resume=True)
        except OSError as exc:
            self._fail_now(f"could not start the training process: {exc}")
            return False
        self._append_log(f"— resuming {run_dir.name} —")
        self._set_state("starting")
        self._timer.start()
        self.run_started.emit(run_dir)
        return True

    def cancel(self) -> None:
        """Stop the run: training finishes its step, saves a checkpoint and exits; Resume continues it."""
        if self.active:
            self.proc.cancel()
            self._set_state("cancelling")

    def stop_and_wait(self, timeout: float = 20.0) -> bool:
        """Cancel and block until the process has exited (closing the app with 'stop')."""
        if not self.active:
            return True
        self.cancel()
        code = self.proc.wait(timeout)
        self.poll()
        return code is not None

    def detach(self) -> None:
        """Leave the run training after the app exits."""
        if self.proc is not None:
            self.proc.detach()
            self._timer.stop()

    def _fail_now(self, message: str) -> None:
        self.last_error = message
        self._show_result(f"Cannot start: {message}", error=True)

    # ================================================================================== following a run
    def _watch(self, run_dir: Path) -> None:
        """Show ``run_dir``: read what it has so far, then follow it."""
        self.run_dir = Path(run_dir)
        self.curves = Curves()
        self._metrics = MetricsFollower(self.run_dir)
        self._log = LineFollower(self.run_dir / training.OUTPUT_LOG)
        self._best_mtime = None
        self._eta = None
        self.last_error = None
        self.first_point_seconds = None
        self.cancel_seconds = None
        self.log_view.clear()
        self._show_result("")
        status = training.read_status(self.run_dir)
        name = (status.request.get("name") if status else None) or self.run_dir.name
        self.run_title.setText(name)
        self.run_title.setToolTip(str(self.run_dir))
        self.run_folder_label.setText(f"Run folder: {self.run_dir}")
        self.poll()
        self._timer.start()

    def open_run(self, run_dir: str | Path) -> None:
        """Show an earlier run (attaching to it if it is still training in the background)."""
        if self.active:
            return
        self.proc = TrainingProcess.attach(run_dir)
        self._watch(Path(run_dir))
        state, status = training.run_state(run_dir)
        self._finish_state(state, status) if state in training.FINAL_STATES else self._set_state(state)

    def _run_picked(self, index: int) -> None:
        path = self.runs_combo.itemData(index)
        if path:
            self.open_run(path)

    def refresh_runs(self) -> None:
        self.runs_combo.clear()
        runs = training.list_runs(self.runs_dir)
        for r in runs:
            self.runs_combo.addItem(f"{r.name} — {STATE_TEXT.get(r.state, r.state)}", str(r.path))
        if not runs:
            self.runs_combo.addItem("no runs yet", None)
        if self.run_dir is not None:
            self.runs_combo.setCurrentIndex(max(0, self.runs_combo.findData(str(self.run_dir))))
        self.runs_combo.setEnabled(bool(runs) and not self.active)

    def poll(self) -> None:
        """Read what the run wrote since the last call; update the curves, the progress, the log and the state."""
        if self.run_dir is None:
            return
        records = self._metrics.poll() if self._metrics else []
        added = self.curves.add_all(records)
        if records:
            self._eta = (self.curves.eta_seconds(), time.monotonic()) if self.curves.eta_seconds() is not None \
                else self._eta
        if added or (records and any(r.get("event") == "start" for r in records)):
            if added and self.first_point_seconds is None and self._started_at is not None:
                self.first_point_seconds = time.perf_counter() - self._started_at
            self._redraw()
            self.curves_updated.emit(self.curves.n_points)
        lines = self._log.poll() if self._log else []
        if lines:
            self._append_log("\n".join(training.clean_log_line(x) for x in lines))
        self._check_best()
        self._update_progress()
        if self.proc is not None:
            code = self.proc.poll()
            if code is not None and not self.proc.detached:
                self._process_ended(code)
            else:
                status = training.read_status(self.run_dir)
                if status is not None and status.state in training.ACTIVE_STATES and status.state != self.state \
                        and self.state != "cancelling":
                    self._set_state(status.state)

    def _append_log(self, text: str) -> None:
        bar = self.log_view.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        self.log_view.appendPlainText(text)
        if at_end:
            bar.setValue(bar.maximum())

    def _check_best(self) -> None:
        best = self.run_dir / "best.lnf"
        try:
            mtime = best.stat().st_mtime
        except OSError:
            return
        if mtime != self._best_mtime:
            self._best_mtime = mtime
            epoch = int(self.curves.epoch) if self.curves.epoch else None
            label = f"{self.run_title.text()} (training" + (f", epoch {epoch})" if epoch else ")")
            if self.state in ("finished",):
                return
            self.checkpoint_improved.emit(best, label)
            self._update_buttons()

    def _process_ended(self, code: int) -> None:
        proc = self.proc
        if proc is not None and proc.cancel_sent is not None and self.cancel_seconds is None:
            self.cancel_seconds = time.time() - proc.cancel_sent
        # the last lines and records
        self.curves.add_all(self._metrics.poll())
        lines = self._log.poll()
        if lines:
            self._append_log("\n".join(training.clean_log_line(x) for x in lines))
        self._redraw()
        self._timer.stop()
        state, status = training.run_state(self.run_dir)
        if state in training.ACTIVE_STATES or state == "new":  # the job died before recording its end
            state = "failed"
            reason = training.last_error(self.log_view.toPlainText().splitlines()[-80:])
            status = training.update_status(self.run_dir, state="failed", exit_code=code,
                                            error=reason or training.describe_exit(code))
        self._finish_state(state, status)
        self.refresh_runs()
        self.run_ended.emit(state)
        if state == "finished" and status is not None and status.model_path:
            self.model_installed.emit(Path(status.model_path))

    def _finish_state(self, state: str, status: training.RunStatus | None) -> None:
        self._set_state(state)
        if state == "finished":
            parts = ["Finished"]
            if status is not None and status.test_nll is not None:
                parts.append(f"test NLL {status.test_nll:.2f} {status.nll_unit or 'nats/step'}")
            elif self.curves.best_valid is not None:
                parts.append(f"best validation −ELBO {self.curves.best_valid:.2f} nats/step")
            text = ": ".join(parts[:1] + ["; ".join(parts[1:])]) if len(parts) > 1 else parts[0]
            if status is not None and status.model_path:
                text += f". Added to your models as {Path(status.model_path).name} (in the model panel)."
            if status is not None and status.note:
                text += f" ({status.note})"
            self._show_result(text)
        elif state == "cancelled":
            took = f" (stopped {self.cancel_seconds:.1f} s after Cancel)" if self.cancel_seconds is not None else ""
            resumable = training.can_resume(self.run_dir)
            self._show_result(f"Cancelled at step {self.curves.step}{took}. "
                              + ("A checkpoint is saved: Resume continues from it." if resumable else
                                 "It stopped before its first checkpoint: start it again."))
        elif state == "failed":
            reason = (status.error if status is not None else None) or training.last_error(
                self.log_view.toPlainText().splitlines()[-80:]) or "the training process ended unexpectedly"
            self.last_error = reason
            more = " Resume continues from the last checkpoint." if training.can_resume(self.run_dir) else ""
            self._show_result(f"Failed: {reason}{more}", error=True)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_label.setText(f"· {STATE_TEXT.get(state, state)}")
        if self.run_dir is not None:  # the runs list shows the state of the run on display too
            index = self.runs_combo.findData(str(self.run_dir))
            if index >= 0:
                self.runs_combo.setItemText(index, f"{self.run_dir.name} — {STATE_TEXT.get(state, state)}")
        self._update_buttons()
        self._update_progress()

    def _show_result(self, text: str, error: bool = False) -> None:
        self.result_text = text
        self.result_label.setText(text)
        self.result_label.setVisible(bool(text))
        pal = self.result_label.palette()
        colour = QColor("#d9480f") if error else self.palette().color(QPalette.ColorRole.WindowText)
        pal.setColor(QPalette.ColorRole.WindowText, colour)
        self.result_label.setPalette(pal)

    def _update_buttons(self) -> None:
        active = self.active
        self.start_button.setEnabled(not active)
        self.cancel_button.setEnabled(active and self.state != "cancelling")
        can_resume = (not active and self.run_dir is not None and self.state in ("cancelled", "failed", "interrupted")
                      and training.can_resume(self.run_dir))
        self.resume_button.setEnabled(can_resume)
        self.use_button.setEnabled(self.run_dir is not None and (self.run_dir / "best.lnf").is_file())
        self.runs_combo.setEnabled(not active and self.runs_combo.count() > 0
                                   and self.runs_combo.itemData(0) is not None)

    def _update_progress(self) -> None:
        c = self.curves
        frac = c.fraction
        if self.state == "finished":
            frac = 1.0
        self.progress.setValue(int(1000 * frac) if frac is not None else 0)
        eta = None
        if self._eta is not None and self._eta[0] is not None and self.state == "running":
            eta = max(0.0, self._eta[0] - (time.monotonic() - self._eta[1]))
        preset = None
        status = training.read_status(self.run_dir) if self.run_dir is not None else None
        if status is not None:
            preset = status.request.get("preset")
        at_most = preset in ("small",) and not (status and status.request.get("max_steps"))
        if self.state in ("starting",) and not c.n_points:
            text = "starting: loading the data and the model…"
        elif c.last_event is None and not c.n_points and self.state in training.FINAL_STATES:
            text = f"{STATE_TEXT[self.state]} before the first training step"
        elif self.state in ("evaluating", "installing"):
            text = f"{training.progress_text(c)} · {STATE_TEXT[self.state]}"
        else:
            text = training.progress_text(c, eta, at_most)
        self.progress.setFormat(text)
        self.progress.setToolTip("ETA at the pace so far" + (
            "; the small preset stops early once the validation loss stops improving at its lowest learning "
            "rate, so the run may end sooner" if at_most else ""))
        n_epochs = len(c.series["valid_loss"])
        n_steps = len(c.series["train_loss_steps"])
        self.points_label.setText(f"points: {n_epochs} epoch{'s' if n_epochs != 1 else ''}, "
                                  f"{n_steps} step record{'s' if n_steps != 1 else ''}")

    # ================================================================================== plot
    def set_x_axis(self, x: str) -> None:
        self._x = x
        for plot in (self.loss_plot, self.kl_plot):
            plot.getPlotItem().setLabel("bottom", "epoch" if x == "epoch" else "optimizer step")
        self._redraw()

    def _redraw(self) -> None:
        for name, item in self.plot_items.items():
            xs, ys = self.curves.xy(name, self._x)
            item.setData(xs, ys)
        for plot, names in ((self.loss_plot, ("train_loss_steps", "train_loss", "valid_loss", "valid_nll")),
                            (self.kl_plot, ("kl_steps", "train_kl", "beta"))):
            values = [v for n in names for v in self.curves.xy(n, self._x)[1]]
            yr = _robust_range(values) if plot is self.loss_plot else _full_range(values)
            vb = plot.getPlotItem().getViewBox()
            if yr is not None:
                vb.enableAutoRange(axis=pg.ViewBox.XAxis)
                vb.setYRange(*yr, padding=0)

    # ================================================================================== the model
    def use_model(self) -> None:
        """Offer the run's best checkpoint to the studio (the main window loads it)."""
        if self.run_dir is not None and (self.run_dir / "best.lnf").is_file():
            label = f"{self.run_title.text()} (training)"
            self.checkpoint_improved.emit(self.run_dir / "best.lnf", label)
            self.use_requested.emit(self.run_dir / "best.lnf")

    def closeEvent(self, event: QCloseEvent) -> None:
        # Closing the window only hides it: a run goes on, and the main window asks when the app closes.
        super().closeEvent(event)
