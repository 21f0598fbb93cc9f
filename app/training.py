"""Training from the app, with no Qt: the command line, the run folder's files, live curves, ETA and run state.

A run started from the app is a separate process tree, so the window (and generation) stays responsive and a
run can outlive the app::

    app (GUI)  ──starts──▶  python -m app.training job RUN_DIR      (the "job": no torch, a new session)
                               ├─ python -m train ... --out RUN_DIR --threads N      (the training CLI)
                               ├─ python -m train.evaluate RUN_DIR/best.lnf --json   (test NLL, if a test split)
                               └─ copies the model into the user's model folder, with its metadata

Everything the processes print goes to ``RUN_DIR/output.log``; the job keeps its state in ``RUN_DIR/studio.json``
(written atomically). The window follows ``metrics.jsonl`` (see :mod:`train.loop` for the records) and
``output.log`` incrementally with :class:`LineFollower`, which copes with a file that appears later and with a
partly written last line.

Cancel sends SIGTERM to the job, which passes it on: the training CLI finishes its step, saves the state and
``last.lnf`` and exits 0, and the run is *cancelled* (``--resume`` continues it). A run whose job died (a crash,
SIGKILL, a power cut) is *failed* and can be resumed from its last checkpoint too.

``python -m app.training job RUN_DIR [--resume]`` is the job's entry point; the app builds ``studio.json`` with
:func:`prepare_run` first.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lnf_core.fsutil import atomic_write_text

PRIORS = ("iaf-scf", "af-scf", "af-af")
#: Emissions the Train window offers, best first: the chord emission scores JSB at 5.67 nats/step against the
#: paper's independent keys' 6.97 on the same prior and size (docs/results.md).
EMISSIONS = ("chords", "nade", "bernoulli")
EMISSION_DROPOUT = 0.2  # what the shipped chord and NADE models were trained with
PRESETS = ("tiny", "small", "paper")  # same names as train.presets.PRESETS (kept here: no torch import)
STATUS_FILE = "studio.json"
OUTPUT_LOG = "output.log"
METRICS_FILE = "metrics.jsonl"
#: Job states in ``studio.json``; :func:`run_state` adds "failed" for a job that died without saying so, and for
#: runs of the training CLI (no ``studio.json``) "external" (it wrote metrics lately) or "interrupted".
ACTIVE_STATES = ("starting", "running", "cancelling", "evaluating", "installing")
FINAL_STATES = ("cancelled", "finished", "failed", "interrupted")
EXTERNAL_QUIET_S = 15 * 60  # a CLI run that wrote no metrics for this long is taken as stopped
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding app/, train/, lnf_core/


# --------------------------------------------------------------------------------------------------------------
# Folders


def _user_base() -> Path:
    from train.datasets.locations import user_data_dir

    return user_data_dir().parent  # <per-user data>/lnf-studio


def runs_dir() -> Path:
    """Where the app puts its training runs: ``$LNF_RUNS_DIR``, else ``<per-user data>/lnf-studio/runs``."""
    env = os.environ.get("LNF_RUNS_DIR", "").strip()
    return Path(env).expanduser() if env else _user_base() / "runs"


# --------------------------------------------------------------------------------------------------------------
# Data choices


@dataclass(frozen=True)
class DataChoice:
    """One entry of the Train window's data list: a known dataset found on disk, or a MIDI folder."""

    value: str  # what --dataset gets: a dataset name or a folder path
    title: str
    detail: str = ""
    path: str = ""


def dataset_choices(data_dir: str | Path | None = None) -> list[DataChoice]:
    """The known music datasets present on this machine (JSB ships; others once ``python -m train.data add``)."""
    from train.datasets.locations import locate_dataset
    from train.datasets.registry import DATASETS

    out = []
    for spec in DATASETS.values():
        if spec.kind != "music":
            continue  # the app makes music; a text model cannot generate here
        where = locate_dataset(spec.name, data_dir)
        if where is not None:
            out.append(DataChoice(spec.name, spec.title, f"{spec.counts_text()} pieces", str(where)))
    return out


def count_midi_files(folder: str | Path) -> int:
    """Number of .mid/.midi files under ``folder`` (what the MIDI-folder loader will try to read)."""
    from train.midi_folder import find_midi_files

    folder = Path(folder).expanduser()
    return len(find_midi_files(folder)) if folder.is_dir() else 0


# --------------------------------------------------------------------------------------------------------------
# Time estimates

#: Whole-run wall time in minutes of ``small`` runs measured on this project's 2-core CPU (README "Results",
#: docs/results-*.md): (when the best checkpoint was saved, when the run stopped early).
SMALL_MINUTES: dict[tuple[str, str], tuple[float, float]] = {
    ("jsb", "iaf-scf"): (15, 24),
    ("jsb", "af-scf"): (8, 11),
    ("jsb", "af-af"): (9, 10),
    ("nottingham", "iaf-scf"): (104, 104),
    ("musedata", "iaf-scf"): (112, 118),
    ("pianomidi", "iaf-scf"): (82, 90),
}
#: One JSB epoch with the ``paper`` preset (``python -m train.bench``, 1 thread), seconds; 100 epochs a run.
PAPER_JSB_EPOCH_S = {"af-af": 20.7, "af-scf": 18.3, "iaf-scf": 35.4}
PAPER_EPOCHS = 100
JSB_TRAIN_PIECES = 229
MEASURED_CORES = 2
TINY_SECONDS = 15.0  # start-up (importing torch) dominates: measured 6-10 s on the 2-core machine


@dataclass(frozen=True)
class Estimate:
    low_s: float
    high_s: float
    basis: str  # where the number comes from

    @property
    def text(self) -> str:
        lo, hi = format_duration(self.low_s), format_duration(self.high_s)
        span = lo if lo == hi else f"{lo}–{hi}"
        for unit in (" s", " min"):  # "15–24 min" rather than "15 min–24 min"
            if lo != hi and lo.endswith(unit) and hi.endswith(unit) and " h" not in lo + hi:
                span = f"{lo[: -len(unit)]}–{hi}"
        return f"≈ {span} (estimate: {self.basis})"


def format_duration(seconds: float | None) -> str:
    """``42`` -> "42 s", ``125`` -> "2 min", ``5400`` -> "1 h 30 min"."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    h, m = divmod(minutes, 60)
    return f"{h} h" if m == 0 else f"{h} h {m:02d} min"


def _jsb_prior_factor(prior: str) -> float:
    base = SMALL_MINUTES[("jsb", "iaf-scf")][1]
    return SMALL_MINUTES.get(("jsb", prior), SMALL_MINUTES[("jsb", "iaf-scf")])[1] / base


def estimate_time(preset: str, dataset: str, prior: str = "iaf-scf", n_files: int | None = None,
                  cores: int | None = None) -> Estimate:
    """Expected wall time of a run on this machine, from the runs measured on the project's 2-core CPU.

    ``dataset`` is a known name or "folder" (then ``n_files`` scales the JSB figure by the number of pieces,
    assuming chorale-length pieces). An estimate only: the progress bar's ETA is measured once training runs.
    """
    cores = cores or os.cpu_count() or 1
    where = f"measured on a {MEASURED_CORES}-core CPU" + ("" if cores == MEASURED_CORES else f"; this one has {cores}")
    if preset == "tiny":
        return Estimate(5.0, TINY_SECONDS, "a test-sized run; mostly start-up")
    scale, basis = 1.0, where
    if dataset == "folder":
        train_pieces = max(1, round(0.8 * (n_files or 0)))
        scale = train_pieces / JSB_TRAIN_PIECES
        basis = f"JSB scaled to {n_files or 0} files of chorale length, {where}"
        dataset = "jsb"
    if preset == "paper":
        factor = SMALL_MINUTES.get((dataset, "iaf-scf"), SMALL_MINUTES[("jsb", "iaf-scf")])[1] / \
            SMALL_MINUTES[("jsb", "iaf-scf")][1]
        seconds = PAPER_JSB_EPOCH_S.get(prior, PAPER_JSB_EPOCH_S["iaf-scf"]) * PAPER_EPOCHS * factor * scale
        return Estimate(seconds, seconds * 1.5, f"{PAPER_EPOCHS} epochs at the benchmarked epoch time, {basis}")
    if (dataset, prior) in SMALL_MINUTES:
        lo, hi = SMALL_MINUTES[(dataset, prior)]
    else:
        lo, hi = SMALL_MINUTES.get((dataset, "iaf-scf"), SMALL_MINUTES[("jsb", "iaf-scf")])
        lo, hi = lo * _jsb_prior_factor(prior), hi * _jsb_prior_factor(prior)
    return Estimate(max(30.0, lo * 60 * scale), max(60.0, hi * 60 * scale), basis)


# --------------------------------------------------------------------------------------------------------------
# The command line


def default_threads() -> int:
    """Training threads: every core (the speeds measured for the estimates used both cores of the machine)."""
    return max(1, os.cpu_count() or 1)


@dataclass
class TrainRequest:
    """What the Train window's form says; :meth:`train_command` turns it into ``python -m train`` arguments."""

    data: str  # a known dataset's name, or a folder of MIDI files
    out: str  # the run directory
    prior: str = "iaf-scf"
    preset: str = "small"
    emission: str = "chords"  # how a frame's keys are modelled (lnf_core.chords / nade / the paper's Bernoulli)
    name: str = ""  # the model's name in the user's model folder (default: the run folder's name)
    threads: int | None = None
    max_steps: int | None = None  # train for exactly this many optimizer steps (the preset's epochs are lifted)
    epochs: int | None = None
    models_dir: str | None = None  # where the finished model is copied (default: the user's model folder)
    evaluate: bool = True  # after training: test NLL with python -m train.evaluate (when there is a test split)

    def validated(self) -> TrainRequest:
        if not self.data:
            raise ValueError("choose the data to train on: a dataset or a folder of MIDI files")
        if self.prior not in PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}; choose one of {', '.join(PRIORS)}")
        if self.emission not in EMISSIONS:
            raise ValueError(f"unknown emission {self.emission!r}; choose one of {', '.join(EMISSIONS)}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown size preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if not self.out:
            raise ValueError("give the run an output name")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("the number of steps must be at least 1")
        return self

    @property
    def model_name(self) -> str:
        return self.name or Path(self.out).name

    def train_command(self, python: str | None = None) -> list[str]:
        """``[python, -m, train, --dataset, ..., --out, RUN_DIR, --threads, N, ...]``."""
        self.validated()
        cmd = [python or sys.executable, "-m", "train", "--dataset", str(self.data), "--prior", self.prior,
               "--preset", self.preset, "--out", str(self.out), "--threads", str(self.threads or default_threads()),
               "--emission", self.emission]
        if self.emission != "bernoulli":
            cmd += ["--emission-dropout", str(EMISSION_DROPOUT)]
        epochs = self.epochs
        if self.max_steps is not None:
            cmd += ["--max-steps", str(self.max_steps)]
            epochs = epochs or self.max_steps  # every epoch has at least one step: max_steps decides
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        return cmd

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainRequest:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def resume_command(run_dir: str | Path, threads: int | None = None, python: str | None = None) -> list[str]:
    """``python -m train --resume RUN_DIR --threads N``: continue from the last checkpoint."""
    return [python or sys.executable, "-m", "train", "--resume", str(run_dir), "--threads",
            str(threads or default_threads())]


def evaluate_command(checkpoint: str | Path, samples: int, threads: int | None = None,
                     python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "train.evaluate", str(checkpoint), "--samples", str(samples), "--json",
            "--threads", str(threads or default_threads())]


def job_command(run_dir: str | Path, resume: bool = False, python: str | None = None) -> list[str]:
    cmd = [python or sys.executable, "-m", "app.training", "job", str(run_dir)]
    return [*cmd, "--resume"] if resume else cmd


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the job: unbuffered output, this checkout importable, nothing GUI-specific."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    path = env.get("PYTHONPATH", "")
    parts = [p for p in path.split(os.pathsep) if p]
    if str(PACKAGE_ROOT) not in parts:
        env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), *parts])
    return env


# --------------------------------------------------------------------------------------------------------------
# Following files


class LineFollower:
    """Reads the complete lines appended to a file since the last call, starting at the beginning.

    The file may not exist yet (nothing is returned until it does); a last line without its newline is kept until
    the rest arrives; a file that shrinks (replaced or truncated) is read again from the start, and
    :attr:`resets` counts how often that happened.
    """

    def __init__(self, path: str | Path, max_bytes: int = 4 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.offset = 0
        self.resets = 0
        self._partial = b""
        self._ino: int | None = None
        self.max_bytes = max_bytes

    def poll(self) -> list[str]:
        try:
            st = self.path.stat()
        except OSError:
            return []
        if st.st_size < self.offset or (self._ino is not None and st.st_ino != self._ino):
            self.offset, self._partial = 0, b""
            self.resets += 1
        self._ino = st.st_ino
        if st.st_size == self.offset:
            return []
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(self.max_bytes)
        except OSError:
            return []
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [line.decode("utf-8", errors="replace") for line in lines]

    @property
    def partial(self) -> str:
        """The last, unfinished line (for example a progress bar being redrawn)."""
        return self._partial.decode("utf-8", errors="replace")


class MetricsFollower:
    """The records appended to a run's ``metrics.jsonl``; lines that are not JSON objects are counted and skipped."""

    def __init__(self, run_dir: str | Path) -> None:
        self.lines = LineFollower(Path(run_dir) / METRICS_FILE)
        self.bad_lines = 0

    @property
    def resets(self) -> int:
        return self.lines.resets

    def poll(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines.poll():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                self.bad_lines += 1
                continue
            if isinstance(rec, dict):
                out.append(rec)
            else:
                self.bad_lines += 1
        return out


_LOG_STAMP = re.compile(r"(?<!^)(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} )")


def clean_log_line(line: str) -> str:
    r"""What a terminal would show of a line: the text after the last carriage return (tqdm redraws with \r),
    with a log record that was written right after an unfinished progress bar moved to a line of its own."""
    line = line.rstrip("\r")
    parts = [segment.rsplit("\r", 1)[-1] for segment in _LOG_STAMP.split(line)]
    return "\n".join(p for p in parts if p)


# --------------------------------------------------------------------------------------------------------------
# Curves and progress

#: Series of the live plot: name -> (record kind, key). "step" records come every 10 steps, "epoch" after each.
SERIES = {
    "train_loss_steps": ("step", "loss"),
    "train_loss": ("epoch", "train_loss"),
    "valid_loss": ("epoch", "valid_loss"),
    "valid_nll": ("epoch", "valid_nll"),
    "kl_steps": ("step", "kl"),
    "train_kl": ("epoch", "train_kl"),
    "beta": ("step", "beta"),
}


@dataclass
class Point:
    step: int
    epoch: float
    value: float


@dataclass
class Curves:
    """The numbers of a run, ready to plot against epochs or steps, plus what the progress bar needs.

    Feed it the records of ``metrics.jsonl`` in order with :meth:`add`. A ``start`` record of a resumed run
    drops the points past its step: the run replays those steps from its last checkpoint.
    """

    series: dict[str, list[Point]] = field(default_factory=lambda: {k: [] for k in SERIES})
    step: int = 0
    epoch: float = 0.0
    epochs: int | None = None
    steps_per_epoch: int | None = None
    max_steps: int | None = None
    time: float | None = None  # training seconds at the latest record
    start_step: int = 0
    start_time: float | None = None
    last_event: str | None = None  # start | stopped | end (the latest lifecycle record)
    stop_reason: str | None = None
    best_valid: float | None = None
    nan_events: int = 0

    def add_all(self, records: Iterable[dict[str, Any]]) -> int:
        n = 0
        for rec in records:
            n += self.add(rec)
        return n

    def add(self, rec: dict[str, Any]) -> int:
        """Take one record; returns the number of points it added."""
        event = rec.get("event")
        step = _num(rec.get("step"))
        epoch = _num(rec.get("epoch"))
        if event == "start":
            s = int(step or 0)
            for pts in self.series.values():
                pts[:] = [p for p in pts if p.step <= s]
            self.start_step = s
            self.start_time = _num(rec.get("time"))
            self.epochs = _int(rec.get("epochs"), self.epochs)
            self.steps_per_epoch = _int(rec.get("steps_per_epoch"), self.steps_per_epoch)
            self.max_steps = _int(rec.get("max_steps"), None)
            self.last_event, self.stop_reason = "start", None
            self.step = s
            self.epoch = epoch if epoch is not None else self.epoch
            self.time = self.start_time
            self._best_from_points()
            return 0
        if event in ("stopped", "end"):
            self.last_event = event
            self.stop_reason = str(rec.get("reason") or "") or None
            self._advance(step, epoch, rec)
            return 0
        if event in ("nan_skip", "nan_recovery"):
            self.nan_events += 1
            return 0
        kind = "epoch" if event == "epoch" else ("step" if event is None and "loss" in rec else None)
        if kind is None or step is None:
            return 0
        added = 0
        for name, (k, key) in SERIES.items():
            value = _num(rec.get(key))
            if k == kind and value is not None and math.isfinite(value):
                self.series[name].append(Point(int(step), float(epoch if epoch is not None else 0.0), value))
                added += 1
        if kind == "epoch" and _num(rec.get("valid_loss")) is not None:
            v = float(rec["valid_loss"])
            self.best_valid = v if self.best_valid is None else min(self.best_valid, v)
        self._advance(step, epoch, rec)
        return added

    def _best_from_points(self) -> None:
        values = [p.value for p in self.series["valid_loss"]]
        self.best_valid = min(values) if values else None

    def _advance(self, step: float | None, epoch: float | None, rec: dict[str, Any]) -> None:
        if step is not None:
            self.step = int(step)
        if epoch is not None:
            self.epoch = float(epoch)
        t = _num(rec.get("time"))
        if t is not None:
            self.time = t

    @property
    def n_points(self) -> int:
        """Points on the curves (the headless screenshot waits for two)."""
        return sum(len(v) for v in self.series.values() if v is not self.series["beta"])

    def xy(self, name: str, x: str = "epoch") -> tuple[list[float], list[float]]:
        pts = self.series[name]
        return ([p.step if x == "step" else p.epoch for p in pts], [p.value for p in pts])

    # -- progress
    @property
    def total_steps(self) -> int | None:
        total = self.epochs * self.steps_per_epoch if self.epochs and self.steps_per_epoch else None
        if self.max_steps:
            total = min(total, self.max_steps) if total else self.max_steps
        return total

    @property
    def fraction(self) -> float | None:
        total = self.total_steps
        return min(1.0, self.step / total) if total else None

    def eta_seconds(self) -> float | None:
        """Seconds left at the pace of this session so far (evaluation included once an epoch has ended)."""
        total = self.total_steps
        if not total or self.start_time is None or self.time is None:
            return None
        done = self.step - self.start_step
        spent = self.time - self.start_time
        if done <= 0 or spent <= 0:
            return None
        return max(0.0, (total - self.step) * spent / done)

    @property
    def epoch_index(self) -> int:
        """The epoch in progress, counting from 1 (capped at the number of epochs); once the run has stopped, the
        last epoch it worked on."""
        if self.last_event in ("stopped", "end"):
            n = max(1, math.ceil(self.epoch))
        else:
            n = int(math.floor(self.epoch)) + 1
        return min(n, self.epochs) if self.epochs else n


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _int(v: Any, default: int | None) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else default


def progress_text(curves: Curves, eta: float | None = None, at_most: bool = False) -> str:
    """"epoch 3/80 · step 87/2320 · ETA 12 min" (the parts that are known)."""
    total = curves.total_steps
    epochs = curves.epochs
    if epochs and total and curves.steps_per_epoch:  # a step limit can end the run before the epochs do
        epochs = min(epochs, -(-total // curves.steps_per_epoch))
    index = min(curves.epoch_index, epochs) if epochs else curves.epoch_index
    parts = [f"epoch {index}/{epochs}" if epochs else f"epoch {index}"]
    parts.append(f"step {curves.step}/{total}" if total else f"step {curves.step}")
    if eta is not None:
        parts.append(f"ETA {'≤ ' if at_most else ''}{format_duration(eta)}")
    return " · ".join(parts)


# --------------------------------------------------------------------------------------------------------------
# Errors in the output


_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception))(?::\s*(.*))?$")


def last_error(lines: Sequence[str] | str) -> str | None:
    """The reason a run failed, from its output: the training CLI's ``error: ...`` line (a TrainingError), else
    the last line of a traceback, worded for a person when it is a known condition (out of memory)."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    lines = [y.strip() for x in lines for y in clean_log_line(x).split("\n")]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):]
    for line in reversed(lines):
        m = _EXC_LINE.match(line)
        if m:
            name, message = m.group(1), (m.group(2) or "").strip()
            if name == "MemoryError" or "out of memory" in message.lower() or "can't allocate" in message.lower() \
                    or "DefaultCPUAllocator" in message:
                return f"out of memory ({name}: {message[:200]}). Try a smaller size preset or close other programs."
            return f"{name}: {message}" if message else name
    return None


def describe_exit(code: int | None) -> str:
    """Words for an exit status (negative: killed by a signal)."""
    if code is None:
        return "the training process ended unexpectedly"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == getattr(signal, "SIGKILL", 9):
            return f"the training process was killed ({name}); the system may have run out of memory"
        return f"the training process was killed ({name})"
    return f"the training process exited with status {code}"


# --------------------------------------------------------------------------------------------------------------
# studio.json: the job's state


@dataclass
class RunStatus:
    state: str = "starting"
    pid: int | None = None
    request: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    error: str | None = None
    note: str | None = None
    test_nll: float | None = None
    test_elbo: float | None = None
    nll_unit: str | None = None
    model_path: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStatus:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def read_status(run_dir: str | Path) -> RunStatus | None:
    path = Path(run_dir) / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return RunStatus.from_dict(data) if isinstance(data, dict) else None


def write_status(run_dir: str | Path, status: RunStatus) -> None:
    """Atomically replace ``studio.json`` (a reader never sees half a file)."""
    atomic_write_text(Path(run_dir) / STATUS_FILE, json.dumps(asdict(status), indent=1))


def update_status(run_dir: str | Path, **changes: Any) -> RunStatus:
    status = read_status(run_dir) or RunStatus()
    for k, v in changes.items():
        setattr(status, k, v)
    write_status(run_dir, status)
    return status


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def run_state(run_dir: str | Path) -> tuple[str, RunStatus | None]:
    """The run's state: new (nothing started), one of :data:`ACTIVE_STATES`, cancelled, finished or failed.

    A job recorded as active whose process is gone died without saying so: *failed* (resumable if it left a
    checkpoint). A run folder made by the training CLI alone is judged by its last ``metrics.jsonl`` record:
    finished, cancelled, *external* (no last record, metrics written in the last 15 minutes: probably still
    training) or *interrupted*.
    """
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if status is not None:
        if status.state in ACTIVE_STATES and not pid_alive(status.pid):
            return "failed", status
        return status.state, status
    metrics = run_dir / METRICS_FILE
    if not metrics.is_file():
        return "new", None
    curves = Curves()
    curves.add_all(MetricsFollower(run_dir).poll())
    state = {"end": "finished", "stopped": "cancelled"}.get(curves.last_event or "")
    if state is None:  # a run of the training CLI: still writing, or it ended without a last record
        recent = time.time() - metrics.stat().st_mtime < EXTERNAL_QUIET_S
        state = "external" if recent else "interrupted"
    return state, None


def can_resume(run_dir: str | Path) -> bool:
    return (Path(run_dir) / "state.safetensors").is_file() and (Path(run_dir) / "config.json").is_file()


@dataclass(frozen=True)
class RunSummary:
    path: Path
    name: str
    state: str
    modified: float


def list_runs(base: str | Path | None = None) -> list[RunSummary]:
    """The runs in the app's runs folder, newest first."""
    base = Path(base) if base else runs_dir()
    if not base.is_dir():
        return []
    out = []
    for d in base.iterdir():
        if d.is_dir() and ((d / STATUS_FILE).is_file() or (d / METRICS_FILE).is_file()):
            state, _ = run_state(d)
            try:
                modified = max(f.stat().st_mtime for f in d.iterdir())
            except (OSError, ValueError):
                modified = 0.0
            out.append(RunSummary(d, d.name, state, modified))
    return sorted(out, key=lambda r: -r.modified)


def prepare_run(request: TrainRequest) -> Path:
    """Create the run folder and its ``studio.json`` for a new run; refuses a folder that already holds a run."""
    request.validated()
    run_dir = Path(request.out).expanduser()
    if (run_dir / "config.json").exists() or (run_dir / STATUS_FILE).exists():
        raise ValueError(f"{run_dir} already holds a training run: choose another name, or resume that run")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_status(run_dir, RunStatus(state="starting", request=request.to_dict(), started=time.time()))
    return run_dir


# --------------------------------------------------------------------------------------------------------------
# The process, seen from the app


class TrainingProcess:
    """A job started (or found running) by the app; Qt-free, polled by the window's timer."""

    def __init__(self, run_dir: str | Path, popen: subprocess.Popen | None = None, pid: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.popen = popen
        self.pid = popen.pid if popen is not None else pid
        self.started = time.time()
        self.cancel_sent: float | None = None
        self.detached = False

    @classmethod
    def start(cls, run_dir: str | Path, resume: bool = False, python: str | None = None) -> TrainingProcess:
        """Start ``python -m app.training job RUN_DIR`` in its own session, output appended to ``output.log``."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            update_status(run_dir, state="starting", error=None, exit_code=None, ended=None, note=None)
        with open(run_dir / OUTPUT_LOG, "ab") as log:
            kwargs: dict[str, Any] = {}
            if os.name == "posix":
                kwargs["start_new_session"] = True  # survives the app (no terminal or group signals reach it)
            else:  # pragma: no cover - Windows
                kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
            popen = subprocess.Popen(job_command(run_dir, resume, python), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=str(run_dir), env=child_env(), **kwargs)
        update_status(run_dir, pid=popen.pid)
        return cls(run_dir, popen)

    @classmethod
    def attach(cls, run_dir: str | Path) -> TrainingProcess | None:
        """A job started earlier (by an app that has since closed) that is still running, else None."""
        state, status = run_state(run_dir)
        if state in ACTIVE_STATES and status is not None and pid_alive(status.pid):
            return cls(run_dir, pid=status.pid)
        return None

    def poll(self) -> int | None:
        """The exit status once the job has ended (None while it runs; 0 for an attached job that ended)."""
        if self.popen is not None:
            return self.popen.poll()
        return None if pid_alive(self.pid) else 0

    @property
    def running(self) -> bool:
        return self.poll() is None

    def cancel(self) -> None:
        """SIGTERM to the job's process group: training saves a checkpoint and stops after its current step."""
        if not self.running:
            return
        self.cancel_sent = time.time()
        try:
            if os.name == "posix":
                os.kill(self.pid, signal.SIGTERM)  # the job passes it on to the training process
            elif self.popen is not None:  # pragma: no cover - Windows
                self.popen.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        if self.running:
            try:
                os.killpg(self.pid, signal.SIGKILL) if os.name == "posix" else self.popen.kill()  # type: ignore
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> int | None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            code = self.poll()
            if code is not None:
                return code
            time.sleep(0.05)
        return self.poll()

    def detach(self) -> None:
        """Let the job run on after the app exits (it has its own session and writes only to files)."""
        self.detached = True
        if self.popen is not None:
            self.popen.returncode = 0  # keep Popen.__del__ from warning about a child still running
            self.popen = None


# --------------------------------------------------------------------------------------------------------------
# The job (python -m app.training job RUN_DIR)


class _Job:
    def __init__(self, run_dir: Path, resume: bool) -> None:
        self.run_dir = run_dir
        self.resume = resume
        self.child: subprocess.Popen | None = None
        self.cancelled = False
        status = read_status(run_dir)
        if status is None or not status.request:
            raise SystemExit(f"error: {run_dir} has no {STATUS_FILE}: start runs from the app (or python -m train)")
        self.status = status
        self.request = TrainRequest.from_dict(status.request)

    def say(self, text: str) -> None:
        print(f"[LNF Studio] {text}", flush=True)

    def set(self, **changes: Any) -> None:
        for k, v in changes.items():
            setattr(self.status, k, v)
        write_status(self.run_dir, self.status)

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.cancelled = True
        if self.status.state in ("running", "starting"):
            self.set(state="cancelling")
        if self.child is not None and self.child.poll() is None:
            try:
                self.child.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run_child(self, cmd: list[str], capture: bool = False) -> tuple[int, str]:
        self.say("$ " + " ".join(["python", *cmd[1:]] if cmd[0] == sys.executable else cmd))
        self.child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=child_env(),
                                      stdout=subprocess.PIPE if capture else None, text=capture)
        out = ""
        if capture:
            out, _ = self.child.communicate()
            sys.stdout.write(out)
            sys.stdout.flush()
        code = self.child.wait()
        self.child = None
        return code, out

    def main(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.on_signal)
        self.set(state="running", pid=os.getpid(), error=None, exit_code=None, ended=None)
        req = self.request
        threads = req.threads or default_threads()
        cmd = resume_command(self.run_dir, threads) if self.resume else req.train_command()
        code, _ = self.run_child(cmd)
        curves = Curves()
        curves.add_all(MetricsFollower(self.run_dir).poll())
        # A SIGTERM that reaches the training CLI before it has set up its handler ends it with -SIGTERM.
        if curves.last_event == "stopped" or (self.cancelled and code in (0, 130, -signal.SIGTERM)):
            note = f"cancelled at step {curves.step}" + ("; resume to continue" if can_resume(self.run_dir) else "")
            self.say(note)
            self.set(state="cancelled", exit_code=code, ended=time.time(), note=note)
            return 0
        if code != 0 or curves.last_event != "end":
            reason = last_error(_tail(self.run_dir / OUTPUT_LOG)) or describe_exit(code)
            self.say(f"training failed: {reason}")
            self.set(state="failed", exit_code=code, ended=time.time(), error=reason)
            return 1
        best = self.run_dir / "best.lnf"
        if not best.is_file():
            best = self.run_dir / "last.lnf"
        result: dict[str, Any] | None = None
        note = None
        if req.evaluate and not self.cancelled:
            self.set(state="evaluating")
            samples = _nll_samples(self.run_dir)
            code, out = self.run_child(evaluate_command(best, samples, threads), capture=True)
            result = _last_json(out) if code == 0 else None
            if result is None:
                why = last_error(_tail(self.run_dir / OUTPUT_LOG, 20)) or describe_exit(code)
                note = "no test evaluation" + ("" if self.cancelled else f": {why}")
                self.say(note)
        self.set(state="installing")
        try:
            target = install_model(best, req.model_name, Path(req.models_dir) if req.models_dir else None, result)
        except Exception as exc:  # say why in the window rather than leaving "installing"
            reason = f"could not copy the model into the model folder ({type(exc).__name__}: {exc})"
            self.say(reason)
            self.set(state="failed", ended=time.time(), error=reason)
            return 1
        self.say(f"model saved as {target}")
        self.set(state="finished", exit_code=0, ended=time.time(), model_path=str(target), note=note,
                 test_nll=result.get("nll") if result else None, test_elbo=result.get("elbo") if result else None,
                 nll_unit=result.get("unit") if result else None)
        return 0


def _tail(path: Path, n: int = 60) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 64 * 1024))
            return fh.read().decode("utf-8", errors="replace").splitlines()[-n:]
    except OSError:
        return []


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and "nll" in value:
                return value
    return None


def _nll_samples(run_dir: Path) -> int:
    """The run's own importance-sample count (its preset's ``nll_samples``), 30 when unknown."""
    try:
        cfg = json.loads((run_dir / "config.json").read_text())["train"]
        return max(1, int(cfg.get("nll_samples") or 30))
    except (OSError, ValueError, KeyError, TypeError):
        return 30


def install_model(checkpoint: str | Path, name: str, models_dir: Path | None = None,
                  result: dict[str, Any] | None = None) -> Path:
    """Copy a run's checkpoint into the user's model folder as ``NAME.lnf``, with its label and test metrics."""
    from app.models import user_models_dir
    from lnf_core.checkpoint import load_checkpoint, save_checkpoint

    models_dir = models_dir or user_models_dir()
    models_dir.mkdir(parents=True, exist_ok=True)
    model, meta = load_checkpoint(checkpoint)
    meta = dict(meta)
    meta["label"] = name
    metrics = dict(meta.get("metrics") or {})
    if result:
        metrics.update(test_nll=round(float(result["nll"]), 4), test_elbo=round(float(result["elbo"]), 4),
                       nll_samples=result.get("samples"), nll_unit=result.get("unit"))
    meta["metrics"] = metrics
    target = models_dir / f"{_safe_name(name)}.lnf"
    save_checkpoint(target, model, meta)
    return target


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^\w.\- ]+", "_", name).strip(" .")
    return cleaned or "model"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.training", description="The app's training job (see the doc).")
    sub = p.add_subparsers(dest="command", required=True)
    job = sub.add_parser("job", help="train, evaluate and install the model of a run prepared by the app")
    job.add_argument("run_dir", type=Path)
    job.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    return _Job(args.run_dir.resolve(), args.resume).main()


if __name__ == "__main__":
    sys.exit(main())
