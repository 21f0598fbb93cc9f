"""``python -m app.bench``: how responsive the app is, measured the way a user feels it.

1. *Click to rolls drawn*: from a click on Generate (8 pieces of 64 steps) to the gallery having painted
   the new thumbnails, through the real worker, signals and painting; the median of several runs after one
   warm-up (the first sample pays for lazy initialisation in torch).
2. *Start-up to first window*: wall time of ``python -m app`` in a fresh process until its window is shown
   (interpreter start, imports, window construction); and until the model is loaded and Generate can be
   used (torch is imported and the checkpoint read in a worker after the window is up).

Targets on a 2-core CPU: < 200 ms and < 3 s. Runs offscreen when there is no display.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_CLICK_MS = 200.0
TARGET_START_S = 3.0
REPO = Path(__file__).resolve().parent.parent


def _app():
    if not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([sys.argv[0]])


def measure_click_to_drawn(model: Path, runs: int = 7, n: int = 8, length: int = 64) -> list[float]:
    """Seconds from the Generate click to the gallery's first paint showing the new batch, per run."""
    from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer
    from PySide6.QtTest import QTest

    from app.generation import GenerationSettings
    from app.ui.main_window import MainWindow
    from app.ui.settings import AppSettings

    app = _app()
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"lnf-bench-settings-{os.getpid()}.ini"
    window = MainWindow(AppSettings(QSettings(str(scratch), QSettings.Format.IniFormat)), interactive=False)
    window.resize(1280, 820)
    window.show()
    loop = QEventLoop()
    window.model_loaded.connect(loop.quit)
    window.model_failed.connect(loop.quit)
    window.load_model(model)
    QTimer.singleShot(120_000, loop.quit)
    loop.exec()
    if window.loaded is None:
        raise SystemExit(f"error: could not load {model}: {window.last_error}")
    panel = window.generate_panel
    panel.auto_seed.setChecked(True)
    panel.apply_settings(GenerationSettings(n=n, length=length, temperature=1.0, seed=1))
    app.processEvents()

    times: list[float] = []
    state: dict[str, float | bool] = {}

    def on_batch(_result) -> None:
        state["batch"] = True

    def on_painted(rows: int) -> None:
        if state.get("batch") and rows == n and "end" not in state:
            state["end"] = time.perf_counter()
            QTimer.singleShot(0, run_loop.quit)

    window.batch_ready.connect(on_batch)
    window.gallery.painted.connect(on_painted)
    for i in range(runs + 1):
        state.clear()
        run_loop = QEventLoop()
        QTimer.singleShot(60_000, run_loop.quit)
        t0 = time.perf_counter()
        QTest.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
        run_loop.exec()
        if "end" not in state:
            raise SystemExit("error: the gallery did not paint the batch within 60 s")
        if i > 0:  # run 0 is the warm-up
            times.append(float(state["end"]) - t0)
        app.processEvents()
    window.close()
    scratch.unlink(missing_ok=True)
    return times


def measure_startup(runs: int = 3, until: str = "shown", model: Path | None = None) -> list[float]:
    """Wall seconds of ``python -m app`` in fresh processes until the window is shown (``until="shown"``) or
    the model is loaded and ready to sample (``until="ready"``)."""
    env = dict(os.environ)
    if not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = env.get("QT_QPA_PLATFORM") or "offscreen"
    env.setdefault("LNF_STUDIO_TEST", "1")  # a scratch settings file, never the user's
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "app", f"--exit-when-{until}"]
        if model is not None:
            cmd += ["--model", str(model)]
        subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
        out.append(time.perf_counter() - t0)
    return out


def _row(name: str, values: list[float], unit: str, target: float) -> str:
    scale = 1000.0 if unit == "ms" else 1.0
    fmt = "{:.0f}" if unit == "ms" else "{:.2f}"
    med = statistics.median(values) * scale
    spread = f"{fmt.format(min(values) * scale)}-{fmt.format(max(values) * scale)} {unit}"
    met = "yes" if med < target else "NO"
    cells = [name, f"{fmt.format(med)} {unit}", spread, f"< {fmt.format(target)} {unit}", met]
    return "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, WIDTHS)) + " |"


WIDTHS = (40, 9, 14, 10, 4)


def _header() -> str:
    cells = ("measure", "median", "range", "target", "met")
    head = "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, WIDTHS)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in WIDTHS) + "|"
    return head + "\n" + rule


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint to measure (default: the shipped default model)")
    ap.add_argument("--runs", type=int, default=7, help="timed generate runs (after one warm-up)")
    ap.add_argument("--startup-runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: as the app, see app.models.sampling_threads)")
    args = ap.parse_args(argv)

    from app import models

    model = Path(args.model) if args.model else models.default_model_path()
    if model is None:
        print(f"error: no model in {models.MODELS_DIR}; pass --model CKPT", file=sys.stderr)
        return 2
    threads = models.configure_threads(args.threads)
    info = models.read_model_info(model)
    print(f"model: {info.label} ({model}) {info.summary}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"torch threads {threads}, Qt platform {os.environ.get('QT_QPA_PLATFORM') or 'default'}")
    click = measure_click_to_drawn(model, runs=args.runs)
    start = measure_startup(args.startup_runs)
    ready = measure_startup(args.startup_runs, "ready", model)
    print()
    print(_header())
    print(_row(f"click Generate -> 8x64 rolls drawn ({len(click)})", click, "ms", TARGET_CLICK_MS))
    print(_row(f"start-up -> first window shown ({len(start)})", start, "s", TARGET_START_S))
    print(_row(f"start-up -> model loaded, ready ({len(ready)})", ready, "s", TARGET_START_S))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
