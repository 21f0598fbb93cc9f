"""The generate panel: how many pieces, how long, temperature, seed and decoding; Generate and Cancel."""

from __future__ import annotations

import secrets

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.generation import MAX_BATCH, MAX_BEST_OF, GenerationSettings
from lnf_core.piano import TONIC_NAMES

SEED_MAX = 2**31 - 1
LENGTH_STEPS, LENGTH_BARS, LENGTH_MODEL = "steps", "bars", "model"
BEATS_PER_BAR = 4
METER_CHOICES = ((2, 4), (3, 4), (4, 4), (6, 8), (2, 2), (3, 8), (9, 8), (12, 8))


def new_seed() -> int:
    """A fresh random seed (what "New seed" puts in the box)."""
    return secrets.randbelow(SEED_MAX)


class GeneratePanel(QWidget):
    """Sampling settings. Emits :attr:`generate_requested` with a :class:`GenerationSettings`."""

    generate_requested = Signal(object)  # GenerationSettings
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("generatePanel")
        self._steps_per_beat = 1
        self._max_len: int | None = None
        self._last: GenerationSettings | None = None
        self._running = False
        self._meter: tuple[int, int] = (4, 4)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(8)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(7)

        self.count = QSpinBox()
        self.count.setObjectName("countSpin")
        self.count.setRange(1, MAX_BATCH)
        self.count.setValue(8)
        self.count.setToolTip(f"How many pieces to sample in one batch (1–{MAX_BATCH})")
        form.addRow("Pieces", self.count)

        self.length_mode = QComboBox()
        self.length_mode.setObjectName("lengthMode")
        self.length_mode.addItem("steps", LENGTH_STEPS)
        self.length_mode.addItem("bars", LENGTH_BARS)
        self.length_mode.addItem("from the model", LENGTH_MODEL)
        self.length_mode.setToolTip(
            "Length of each piece: a number of time steps, of bars of the chosen meter, or drawn from the model's "
            "length distribution p(T) learned from the training pieces"
        )
        self.length = QSpinBox()
        self.length.setObjectName("lengthSpin")
        self.length.setRange(1, 1000)
        self.length.setValue(64)
        self.length.setMinimumWidth(70)
        row = QHBoxLayout()
        row.setSpacing(6)
        row.addWidget(self.length, 1)
        row.addWidget(self.length_mode, 1)
        form.addRow("Length", row)
        self.length_mode.currentIndexChanged.connect(self._length_mode_changed)

        self.meter = QComboBox()
        self.meter.setObjectName("meterCombo")
        for num, den in METER_CHOICES:
            self.meter.addItem(f"{num}/{den}", (num, den))
        self.meter.setCurrentIndex(METER_CHOICES.index((4, 4)))
        self.meter.setToolTip(
            "Time signature of new pieces: the bar grid, the length in bars and the exported MIDI file. Defaults to "
            "what the model's training data implies"
        )
        self.meter.currentIndexChanged.connect(self._meter_changed)
        self.key = QComboBox()
        self.key.setObjectName("keyCombo")
        self.key.addItem("as trained", "trained")
        self.key.addItem("random", "random")
        for name in TONIC_NAMES:
            self.key.addItem(name, name)
        self.key.setToolTip(
            "Key of the batch (tonic; major or minor is what the model sampled). 'as trained' keeps the key the model "
            "learnt (C for the benchmark models); 'random' draws one per batch from its seed. Changing it transposes "
            "the current batch"
        )
        mrow = QHBoxLayout()
        mrow.setSpacing(6)
        mrow.addWidget(self.key, 1)
        meter_label = QLabel("Meter")
        mrow.addWidget(meter_label)
        mrow.addWidget(self.meter, 1)
        form.addRow("Key", mrow)

        self.temperature = QDoubleSpinBox()
        self.temperature.setObjectName("temperatureSpin")
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setDecimals(2)
        self.temperature.setValue(1.0)
        self.temperature.setToolTip(
            "Scale of the prior noise ε ~ N(0, t²I) fed through the flow: below 1 gives safer, more typical "
            "pieces; above 1 more adventurous ones"
        )
        form.addRow("Temperature", self.temperature)

        self.key_temperature = QDoubleSpinBox()
        self.key_temperature.setObjectName("keyTemperatureSpin")
        self.key_temperature.setRange(0.05, 2.0)
        self.key_temperature.setSingleStep(0.05)
        self.key_temperature.setDecimals(2)
        self.key_temperature.setValue(1.0)
        self.key_temperature.setToolTip(
            "How freely the notes of each step are chosen given the latent path: below 1 keeps to the chords and "
            "notes the model finds likeliest (cleaner harmony, less variety), 1 is the model's own distribution. "
            "Each model starts with the value it was tuned for"
        )
        self.continuity = QDoubleSpinBox()
        self.continuity.setObjectName("continuitySpin")
        self.continuity.setRange(0.0, 0.95)
        self.continuity.setSingleStep(0.05)
        self.continuity.setDecimals(2)
        self.continuity.setValue(0.0)
        self.continuity.setToolTip(
            "Legato between steps: 0 draws every step's notes independently (the model's own joint distribution); "
            "higher values reuse the same random choices from step to step, so a voicing is kept while the model "
            "hesitates between equivalent ones. Every step is still drawn from the model"
        )
        nrow = QHBoxLayout()
        nrow.setSpacing(6)
        nrow.addWidget(self.key_temperature, 1)
        nrow.addWidget(QLabel("Legato"))
        nrow.addWidget(self.continuity, 1)
        form.addRow("Notes", nrow)

        self.seed = QSpinBox()
        self.seed.setObjectName("seedSpin")
        self.seed.setRange(0, SEED_MAX)
        self.seed.setValue(new_seed())
        self.seed.setToolTip("Same seed and settings on the same model give the same pieces. A seed you type "
                             "is used for the next batch, also with \"New seed for every batch\" ticked")
        self._seed_chosen = False  # the user typed (or drew) the seed in the box: the next batch uses it
        self._setting_seed = False
        self.seed.valueChanged.connect(self._seed_edited)
        self.new_seed_button = QToolButton()
        self.new_seed_button.setObjectName("newSeedButton")
        self.new_seed_button.setText("New")
        self.new_seed_button.setToolTip("Pick a new random seed")
        self.new_seed_button.clicked.connect(lambda: self.seed.setValue(new_seed()))  # counts as chosen
        srow = QHBoxLayout()
        srow.setSpacing(6)
        srow.addWidget(self.seed, 1)
        srow.addWidget(self.new_seed_button)
        form.addRow("Seed", srow)
        self.auto_seed = QCheckBox("New seed for every batch")
        self.auto_seed.setObjectName("autoSeed")
        self.auto_seed.setChecked(True)
        self.auto_seed.setToolTip(
            "Each Generate draws a fresh seed, except right after you typed one (that one is used first). "
            "Untick to keep the seed, e.g. to compare temperatures on the same noise"
        )
        form.addRow("", self.auto_seed)

        self.decode = QComboBox()
        self.decode.setObjectName("decodeCombo")
        self.decode.addItem("Sample", "bernoulli")
        self.decode.addItem("Most likely (greedy)", "threshold")
        self.decode.addItem("Most likely, voice-led", "voiced")
        self.decode.addItem("Sample, voice-led", "voiced-sample")
        self.decode.setToolTip(
            "How each step's notes are read from the model: draw them from its distribution, take the likeliest "
            "choice at each step (a chord model's likeliest chord; otherwise every key with p > 0.5), or choose "
            "the succession of chords as a whole, scored also on how the bass and the top voice move (smooth lines, "
            "few parallel fifths: the voice leading of the training music), the likeliest one or a draw "
            "(chord models only; for others as greedy or as a sample)"
        )
        form.addRow("Decoding", self.decode)
        self.decode.currentIndexChanged.connect(self._decode_changed)

        self.best_of = QSpinBox()
        self.best_of.setObjectName("bestOfSpin")
        self.best_of.setRange(1, MAX_BEST_OF)
        self.best_of.setValue(1)
        self.best_of.setPrefix("best of ")
        self.best_of.setSpecialValueText("off (keep every sample)")
        self.best_of.setToolTip(
            "Keep the best of N: sample N candidates for every piece and keep the one the model finds most likely "
            "(fewer wrong notes, a little less variety; N times the sampling work plus scoring)"
        )
        form.addRow("Keep", self.best_of)
        outer.addLayout(form)

        buttons = QHBoxLayout()
        buttons.setSpacing(6)
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generateButton")
        self.generate_button.setDefault(True)
        self.generate_button.setMinimumHeight(34)
        f = self.generate_button.font()
        f.setBold(True)
        self.generate_button.setFont(f)
        self.generate_button.setToolTip("Sample a new batch (Ctrl+G)")
        self.generate_button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.generate_button.clicked.connect(self.request_batch)
        self.reproduce_button = QPushButton("Reproduce")
        self.reproduce_button.setObjectName("reproduceButton")
        self.reproduce_button.setMinimumHeight(34)
        self.reproduce_button.setToolTip("Generate the last batch again: same seed and settings (Ctrl+R)")
        self.reproduce_button.setEnabled(False)
        self.reproduce_button.clicked.connect(self.reproduce)
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.reproduce_button, 1)
        outer.addLayout(buttons)

        # Below the buttons: either a one-line summary of the last batch or, while sampling, progress and
        # Cancel. A stacked widget keeps the height constant, so nothing jumps when sampling starts.
        self.summary = QLabel("")
        self.summary.setObjectName("generateSummary")
        self.summary.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        busy = QWidget()
        prow = QHBoxLayout(busy)
        prow.setContentsMargins(0, 0, 0, 0)
        prow.setSpacing(6)
        self.progress = QProgressBar()
        self.progress.setObjectName("generateProgress")
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(10)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.clicked.connect(self.cancel_requested)
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.cancel_button)
        self._status_stack = QStackedWidget()
        self._status_stack.addWidget(self.summary)
        self._status_stack.addWidget(busy)
        self._status_stack.setFixedHeight(max(busy.sizeHint().height(), self.summary.sizeHint().height()))
        outer.addWidget(self._status_stack)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

    def _decode_changed(self, *_args) -> None:
        """Note temperature and legato shape the random draw: with "Most likely" there is none to shape (and a
        voice-led draw has its own link between neighbouring steps, so no legato)."""
        mode = self.decode.currentData()
        self.key_temperature.setEnabled(mode in ("bernoulli", "voiced-sample"))
        self.continuity.setEnabled(mode == "bernoulli")

    # -- model-dependent settings
    def set_recommended(self, recommended) -> None:
        """Start from the sampling settings a model was tuned for (``SamplingSettings.recommended``): temperature,
        note temperature, legato, decoding and best-of."""
        self.temperature.setValue(recommended.temperature)
        self.key_temperature.setValue(recommended.key_temperature)
        self.continuity.setValue(recommended.continuity)
        self.best_of.setValue(recommended.best_of)
        idx = self.decode.findData(recommended.decode)
        if idx >= 0:
            self.decode.setCurrentIndex(idx)

    # -- model-dependent limits
    def set_model_limits(self, steps_per_beat: int, max_len: int | None, enabled: bool = True) -> None:
        """Adapt the length controls to a model (steps per beat for bars, its maximum length)."""
        self._steps_per_beat = max(1, steps_per_beat)
        self._max_len = max_len
        self._apply_length_range()
        self.generate_button.setEnabled(enabled and not self._running)

    def bar_steps(self) -> int:
        """Steps in one bar of the chosen meter on the model's grid (at least 1)."""
        num, den = self.current_meter()
        return max(1, round(num * 4 * self._steps_per_beat / den))

    def current_meter(self) -> tuple[int, int]:
        data = self.meter.currentData()
        return (int(data[0]), int(data[1])) if data else (4, 4)

    def set_meter(self, meter: tuple[int, int]) -> None:
        """Select a meter (added to the list when it is not there)."""
        meter = (int(meter[0]), int(meter[1]))
        idx = self.meter.findData(meter)
        if idx < 0:
            self.meter.addItem(f"{meter[0]}/{meter[1]}", meter)
            idx = self.meter.count() - 1
        self.meter.setCurrentIndex(idx)

    def key_choice(self) -> str:
        return str(self.key.currentData() or "trained")

    def set_key_choice(self, choice: str) -> None:
        idx = self.key.findData(choice)
        if idx >= 0:
            self.key.setCurrentIndex(idx)

    def _meter_changed(self) -> None:
        old_bar = max(1, round(self._meter[0] * 4 * self._steps_per_beat / self._meter[1]))
        steps = self.length.value() * old_bar if self.length_mode.currentData() == LENGTH_BARS else None
        self._meter = self.current_meter()
        self._apply_length_range()
        if steps is not None:
            self.length.setValue(max(1, round(steps / self.bar_steps())))

    def _apply_length_range(self) -> None:
        limit = self._max_len or 1000
        if self.length_mode.currentData() == LENGTH_BARS:
            self.length.setRange(1, max(1, limit // self.bar_steps()))
            self.length.setSuffix(" bars")
        else:
            self.length.setRange(1, limit)
            self.length.setSuffix("")

    def _length_mode_changed(self) -> None:
        mode = self.length_mode.currentData()
        old_steps = self._current_steps_guess()
        self._apply_length_range()
        bar = self.bar_steps()
        if mode == LENGTH_BARS:
            self.length.setValue(max(1, round(old_steps / bar)))
        elif mode == LENGTH_STEPS:
            self.length.setValue(old_steps)
        self.length.setEnabled(mode != LENGTH_MODEL)
        self._mode = mode

    def _current_steps_guess(self) -> int:
        prev = getattr(self, "_mode", LENGTH_STEPS)
        if prev == LENGTH_BARS:
            return self.length.value() * self.bar_steps()
        return self.length.value()

    # -- settings
    def length_steps(self) -> int | None:
        """The requested length in time steps (None: drawn from the model)."""
        mode = self.length_mode.currentData()
        if mode == LENGTH_MODEL:
            return None
        if mode == LENGTH_BARS:
            return self.length.value() * self.bar_steps()
        return self.length.value()

    def settings(self) -> GenerationSettings:
        return GenerationSettings(
            n=self.count.value(),
            length=self.length_steps(),
            temperature=round(self.temperature.value(), 4),
            seed=self.seed.value(),
            decode=self.decode.currentData(),
            key_temperature=round(self.key_temperature.value(), 4),
            continuity=round(self.continuity.value(), 4),
            best_of=self.best_of.value(),
            key=self.key_choice(),
            meter=self.current_meter(),
        )

    def apply_settings(self, s: GenerationSettings) -> None:
        """Put a batch's settings back into the controls (used by Reproduce)."""
        self.count.setValue(s.n)
        if s.length is None:
            self.length_mode.setCurrentIndex(self.length_mode.findData(LENGTH_MODEL))
        else:
            self.length_mode.setCurrentIndex(self.length_mode.findData(LENGTH_STEPS))
            self.length.setValue(s.length)
        self.temperature.setValue(s.temperature)
        self._set_seed(s.seed)
        self.decode.setCurrentIndex(self.decode.findData(s.decode))
        self.key_temperature.setValue(s.key_temperature)
        self.continuity.setValue(s.continuity)
        self.best_of.setValue(s.best_of)
        self.key.blockSignals(True)  # restoring a batch's key must not re-transpose the shown batch
        self.set_key_choice(s.key)
        self.key.blockSignals(False)
        if s.meter:
            self.set_meter(s.meter)

    def _set_seed(self, seed: int) -> None:
        """Put a seed in the box on the program's behalf (not a seed the user chose)."""
        self._setting_seed = True
        try:
            self.seed.setValue(seed)
        finally:
            self._setting_seed = False

    def _seed_edited(self, _value: int) -> None:
        if not self._setting_seed:
            self._seed_chosen = True

    @property
    def seed_chosen(self) -> bool:
        """Whether the seed in the box was typed by the user since the last batch (it will be used as is)."""
        return self._seed_chosen

    @property
    def last_settings(self) -> GenerationSettings | None:
        return self._last

    def request_batch(self) -> None:
        """Ask for a batch with the panel's settings, as the Generate button does (with "New seed for every batch"
        a new seed first, unless one was typed); nothing while a batch is sampled."""
        if self._running:
            return
        if self.auto_seed.isChecked() and self._last is not None and not self._seed_chosen:
            self._set_seed(new_seed())
        self.request(self.settings())

    def request(self, s: GenerationSettings) -> None:
        self._last = s
        self._seed_chosen = False  # used now; with "New seed for every batch" the next batch draws again
        self.reproduce_button.setEnabled(True)
        self.generate_requested.emit(s)

    def reproduce(self) -> None:
        """Generate again with exactly the last batch's seed and settings."""
        if self._last is None or self._running:
            return
        self.apply_settings(self._last)
        self.request(self._last)

    # -- running state
    def set_running(self, running: bool) -> None:
        self._running = running
        self.generate_button.setEnabled(not running)
        self.reproduce_button.setEnabled(not running and self._last is not None)
        self._status_stack.setCurrentIndex(1 if running else 0)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setRange(0, 0)  # busy until the first progress report

    def set_summary(self, text: str) -> None:
        """One dim line under the buttons, e.g. "12 pieces in 108 ms"."""
        self.summary.setText(text)
        self.summary.setToolTip(text)

    @property
    def progress_visible(self) -> bool:
        return self._status_stack.currentIndex() == 1

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
