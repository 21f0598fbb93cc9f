"""``python -m app``: start LNF Studio.

Options: ``--model CKPT`` opens a checkpoint instead of the default model; ``--screenshot FILE
[--generate N]`` opens the window, generates N pieces, saves the window as a PNG and exits (used by the
tests and the README); ``--theme light|dark|system``.

``--screenshot FILE --train DATA [--preset tiny] [--prior iaf-scf] [--max-steps N] --out RUN_DIR`` opens the
Train window, starts a run on DATA (a dataset name or a folder of MIDI files) from it, waits until the curves
show at least two points, saves the Train window as a PNG, cancels the run (a checkpoint stays in RUN_DIR) and
exits 0. Without ``--screenshot``, ``--train DATA`` opens the Train window with DATA filled in.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

_T0 = time.perf_counter()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m app", description="LNF Studio: music from latent normalizing flows")
    ap.add_argument("--model", metavar="CKPT", help="checkpoint (.lnf) to open instead of the default model")
    ap.add_argument("--models-dir", metavar="DIR", help="folder of shipped models (default: assets/models)")
    ap.add_argument("--screenshot", metavar="FILE", help="save the window as a PNG and exit")
    ap.add_argument("--generate", metavar="N", type=int, default=0, help="with --screenshot: generate N pieces first")
    ap.add_argument("--seed", type=int, default=None, help="seed for --generate (default: a fixed one)")
    ap.add_argument("--length", type=int, default=None, help="length in steps for --generate")
    ap.add_argument("--theme", choices=("system", "light", "dark"), help="colour theme (saved in settings)")
    ap.add_argument("--size", default=None, metavar="WxH",
                    help="window size (default: the last size, or 1280x820; screenshots 1280x820)")
    ap.add_argument("--train", metavar="DATA", help="open the Train window on DATA (a dataset name or a MIDI folder); "
                    "with --screenshot: start a run, save the window once the curves show, cancel, exit")
    ap.add_argument("--preset", choices=("tiny", "small", "paper"), help="with --train: the size preset")
    ap.add_argument("--prior", choices=("iaf-scf", "af-scf", "af-af"), help="with --train: the prior")
    ap.add_argument("--max-steps", type=int, help="with --train: train for this many optimizer steps")
    ap.add_argument("--out", metavar="RUN_DIR", help="with --train: the run folder")
    ap.add_argument("--min-points", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--exit-when-shown", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--exit-when-ready", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.screenshot and not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY") \
            and sys.platform.startswith("linux"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a screenshot needs no display
    if (sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM")
            and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")):
        # Without this check Qt aborts the process with a misleading message about xcb-cursor.
        print("error: no display found (neither DISPLAY nor WAYLAND_DISPLAY is set). LNF Studio needs a desktop "
              "session; on a headless machine use `python -m app.generate` (MIDI/WAV/PNG files), `python -m app "
              "--screenshot FILE`, or run the app under Xvfb (`xvfb-run python -m app`).", file=sys.stderr)
        return 2
    from PySide6.QtCore import QCoreApplication, QTimer
    from PySide6.QtWidgets import QApplication

    from app.ui.settings import APPLICATION, ORGANISATION, AppSettings
    from app.ui.theme import apply_theme

    QCoreApplication.setOrganizationName(ORGANISATION)
    QCoreApplication.setApplicationName(APPLICATION)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    settings = AppSettings()
    if args.theme:
        settings.theme = args.theme
    apply_theme(app, settings.theme)

    from app import models
    from app.ui.main_window import MainWindow

    if not args.exit_when_shown:
        _prefetch_model_library()

    models_dir = Path(args.models_dir) if args.models_dir else models.MODELS_DIR
    # configure_threads: the load worker sets torch's thread count once torch is imported (after the window
    # is up); see app.models.sampling_threads.
    window = MainWindow(settings, models_dir=models_dir, interactive=not args.screenshot, configure_threads=True)
    size = args.size or ("1280x820" if args.screenshot else None)
    if size:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
            window.resize(w, h)
        except ValueError:
            print(f"ignoring --size {size!r}: expected WIDTHxHEIGHT such as 1280x820", file=sys.stderr)
    window.show()

    if args.exit_when_shown:
        def shown() -> None:
            print(f"window shown after {time.perf_counter() - _T0:.3f} s in-process", flush=True)
            app.quit()

        QTimer.singleShot(0, shown)
        return app.exec()

    model_path = _initial_model(args, settings, window)
    exit_code = [0]

    if args.train and args.screenshot:
        _drive_train_screenshot(app, window, args, exit_code)
        return app.exec() or exit_code[0]
    if args.train:
        QTimer.singleShot(0, lambda: _prefill_train_window(window, args))
    if args.screenshot:
        _drive_screenshot(app, window, model_path, args, exit_code)
    else:
        if args.exit_when_ready:  # bench: quit once the model is loaded (or failed to load)
            def ready(*_a) -> None:
                print(f"model ready after {time.perf_counter() - _T0:.3f} s in-process", flush=True)
                exit_code[0] = 0 if window.loaded is not None else 2
                app.quit()

            window.model_loaded.connect(ready)
            window.model_failed.connect(ready)
        if model_path is not None:
            QTimer.singleShot(0, lambda: window.load_model(model_path))
        else:
            window.status(f"No model found in {models_dir}: open a checkpoint with File ▸ Open Checkpoint…")
        QTimer.singleShot(150, window.check_audio)
    rc = app.exec()
    return exit_code[0] or rc


def _prefetch_model_library() -> None:
    """Import torch and lnf_core on a background thread while the window is built and shown, so the model
    is ready sooner; the load worker simply waits for the import if it is not done yet."""
    import importlib
    import threading

    threading.Thread(target=importlib.import_module, args=("lnf_core.checkpoint",), daemon=True,
                     name="prefetch-torch").start()


def _initial_model(args: argparse.Namespace, settings, window) -> Path | None:
    if args.model:
        return Path(args.model)
    last = settings.last_model
    if last and Path(last).is_file() and not args.screenshot:
        return Path(last)
    return window.default_model()


def _drive_screenshot(app, window, model_path: Path | None, args: argparse.Namespace, exit_code: list[int]) -> None:
    """Load the model, generate, select the first piece, save the window, quit (exit 2 on errors)."""
    from PySide6.QtCore import QTimer


    def fail(message: str, code: int = 2) -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)
        exit_code[0] = code
        # quit() does nothing before the event loop runs (this can be called before app.exec()): queue it
        QTimer.singleShot(0, app.quit)

    audio_pending = [True]  # the audio check runs on a worker: wait for it (a few seconds at most)
    tries = [0]

    def save() -> None:
        if audio_pending[0] and tries[0] < 100:
            tries[0] += 1
            QTimer.singleShot(50, save)
            return
        app.processEvents()
        pix = window.grab()
        path = Path(args.screenshot)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not pix.save(str(path), "PNG"):
            fail(f"could not write the screenshot {path}")
            return
        print(f"wrote {path} ({pix.width()}x{pix.height()})")
        app.quit()

    def after_batch(_result) -> None:
        gallery = window.gallery
        if len(window.gallery.pieces()) >= 2:
            gallery.selectionModel().clearSelection()
            gallery.setCurrentIndex(gallery.piece_model.index(0))
        QTimer.singleShot(50, save)

    def on_loaded(loaded) -> None:
        if args.generate > 0:
            n = min(64, args.generate)
            length = args.length or min(64, loaded.max_len or 64)
            seed = 1234 if args.seed is None else args.seed
            window.batch_ready.connect(after_batch)
            base = window.generate_panel.settings()  # the model's recommended sampling settings
            window.generate_panel.apply_settings(replace(base, n=n, length=length, seed=seed))
            window.generate_panel.request(window.generate_panel.settings())
        else:
            QTimer.singleShot(50, save)

    window.model_loaded.connect(on_loaded)
    window.model_failed.connect(lambda msg: fail(msg))
    window.audio_checked.connect(lambda _status: audio_pending.__setitem__(0, False))
    window.check_audio()
    if model_path is None:
        if args.generate:
            fail(f"no model to generate with: no .lnf checkpoint in {window.models_dir}; pass --model CKPT")
            return
        QTimer.singleShot(50, save)
    else:
        QTimer.singleShot(0, lambda: window.load_model(model_path))
    QTimer.singleShot(120_000, lambda: fail("timed out after 120 s", 3))


def _prefill_train_window(window, args: argparse.Namespace):
    tw = window.open_train_window()
    tw.set_data(args.train)
    if args.preset:
        tw.set_preset(args.preset)
    if args.prior:
        tw.set_prior(args.prior)
    if args.out:
        tw.name_edit.setText(Path(args.out).name)
    return tw


def _drive_train_screenshot(app, window, args: argparse.Namespace, exit_code: list[int]) -> None:
    """Start a run from the Train window, save the window once the curves have points, cancel, check, quit."""
    from PySide6.QtCore import QTimer

    state = {"shot": False, "cancel_at": None}
    out = Path(args.out or "runs/screenshot").expanduser()

    def finish(code: int, message: str = "") -> None:
        if message:
            print(message, file=sys.stderr if code else sys.stdout)
        exit_code[0] = code
        tw = window.train_window
        if tw is not None and tw.active:
            tw.stop_and_wait(30.0)
        app.exit(code)

    def shoot() -> None:
        tw = window.train_window
        app.processEvents()
        pix = tw.grab()
        path = Path(args.screenshot)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not pix.save(str(path), "PNG"):
            finish(2, f"error: could not write the screenshot {path}")
            return
        state["shot"] = True
        first = tw.first_point_seconds
        print(f"wrote {path} ({pix.width()}x{pix.height()}); first curve point {first:.1f} s after Start"
              if first is not None else f"wrote {path} ({pix.width()}x{pix.height()})", flush=True)
        if tw.active:
            state["cancel_at"] = time.perf_counter()
            tw.cancel()
        else:
            ended(tw.state)

    def points(n: int) -> None:
        if not state["shot"] and n >= max(1, args.min_points):
            state["shot"] = True  # once
            QTimer.singleShot(150, shoot)

    def ended(run_state: str) -> None:
        tw = window.train_window
        if not state["shot"]:
            if run_state == "failed":
                finish(2, f"error: the training run failed: {tw.last_error}")
            else:
                QTimer.singleShot(150, shoot)
            return
        if run_state == "failed":
            finish(2, f"error: the training run failed: {tw.last_error}")
            return
        ckpt = out / "last.lnf"
        try:
            from lnf_core.checkpoint import load_checkpoint

            load_checkpoint(ckpt)
        except Exception as exc:  # report any reason the checkpoint is unusable
            finish(2, f"error: no loadable checkpoint in {out}: {exc}")
            return
        took = tw.cancel_seconds
        finish(0, f"run {run_state}" + (f", stopped {took:.1f} s after Cancel" if took is not None else "")
               + f"; checkpoint {ckpt} loads")

    def start() -> None:
        tw = _prefill_train_window(window, args)
        tw.resize(1220, 780)
        tw.curves_updated.connect(points)
        tw.run_ended.connect(lambda s: QTimer.singleShot(0, lambda: ended(s)))
        if tw.start(out=out, max_steps=args.max_steps) is None:
            finish(2, f"error: could not start training: {tw.result_text}")

    QTimer.singleShot(0, start)
    QTimer.singleShot(300_000, lambda: finish(3, "error: timed out after 300 s"))


if __name__ == "__main__":
    raise SystemExit(main())
