"""Saving generated pieces: MIDI files, WAV renders and numbered batches (no Qt here).

A generated sample of the model is a piano roll (``bool [T, 88]``, see :mod:`lnf_core.pianoroll`) at sounding
pitch (:mod:`app.pitchspace`). It is exported as a Standard MIDI File carrying its tempo, time signature and key
signature (:func:`write_midi`) and/or as 16-bit PCM WAV rendered by the
:class:`app.audio.Synthesizer` (:func:`write_wav`). Every file is written atomically: to a temporary file in
the target folder, then renamed over the target, so a crash never leaves a half-written file under the
real name. :func:`export_batch` numbers files (``lnf_001.mid``, ``lnf_002.mid`` ...) after the highest number
already in the folder and never overwrites an existing file.
"""

from __future__ import annotations

import glob
import os
import re
import wave
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.audio import DEFAULT_SAMPLE_RATE, peak_normalize
from lnf_core.fsutil import atomic_write
from lnf_core.midi_lib import pretty_midi
from lnf_core.pianoroll import roll_to_midi

if TYPE_CHECKING:
    from app.audio import Synthesizer

EXPORT_FORMATS = ("mid", "wav")


class ExportError(OSError):
    """A file could not be written; the message names it and the reason."""


def _atomic_write(path: Path, write: Callable[[Path], None], *, overwrite: bool = True) -> Path:
    """Run ``write(tmp_path)`` on a temporary file beside ``path`` and rename it to ``path``
    (:func:`lnf_core.fsutil.atomic_write`, the temporary file named ``.NAME.*.part``), failures as
    :class:`ExportError`.

    With ``overwrite=False`` an existing ``path`` is never replaced (the final step is a hard link, which fails
    when the name is taken, where the file system supports it) and :class:`FileExistsError` is raised.
    """
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"Could not create the folder {folder} for {path.name}: {exc.strerror or exc}") from exc
    try:
        return atomic_write(path, write, overwrite=overwrite, suffix=".part")
    except FileExistsError:
        raise
    except OSError as exc:
        raise ExportError(f"Could not write {path}: {exc.strerror or exc}") from exc


def _midi_writer(pm: pretty_midi.PrettyMIDI) -> Callable[[Path], None]:
    return lambda tmp: pm.write(str(tmp))


def _to_midi(roll: np.ndarray, velocities: np.ndarray | None, midi_kwargs: dict[str, Any]) -> pretty_midi.PrettyMIDI:
    if velocities is None:
        return roll_to_midi(roll, **midi_kwargs)
    from app.editing import roll_midi

    return roll_midi(roll, velocities, **midi_kwargs)


def write_midi(roll: np.ndarray, path: str | os.PathLike[str], *, overwrite: bool = True,
               velocities: np.ndarray | None = None, **midi_kwargs: Any) -> Path:
    """Write a roll as a Standard MIDI File; ``midi_kwargs`` go to :func:`lnf_core.pianoroll.roll_to_midi`
    (``tempo_bpm``, ``steps_per_beat``, ``program``, ``velocity``, ``merge_repeats``, ``humanize`` ...).
    ``velocities`` (uint8 [T, 88], an edited piece's) gives each note its own velocity."""
    pm = _to_midi(roll, velocities, midi_kwargs)
    return _atomic_write(Path(path), _midi_writer(pm), overwrite=overwrite)


def _to_int16(buffer: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(buffer, -1.0, 1.0) * 32767.0).astype("<i2")


def write_wav(
    buffer: np.ndarray,
    sample_rate: int,
    path: str | os.PathLike[str],
    *,
    normalize: bool = True,
    peak_dbfs: float = -1.0,
    overwrite: bool = True,
) -> Path:
    """Write audio (``float [n]`` or ``[n, channels]`` in [-1, 1]) as 16-bit PCM WAV.

    With ``normalize`` the peak is brought to ``peak_dbfs`` (-1 dBFS), except for silence, which stays
    silence. Values beyond full scale are clipped.
    """
    buf = np.asarray(buffer, dtype=np.float32)
    if buf.ndim == 1:
        buf = buf[:, None]
    if buf.ndim != 2 or buf.shape[1] < 1:
        raise ValueError(f"expected audio of shape [frames] or [frames, channels], got {buf.shape}")
    if not np.isfinite(buf).all():
        raise ValueError("the audio contains NaN or infinite samples")
    if normalize:
        buf = peak_normalize(buf, peak_dbfs)
    pcm = _to_int16(buf)

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as wf:
            wf.setnchannels(pcm.shape[1])
            wf.setsampwidth(2)
            wf.setframerate(int(sample_rate))
            wf.writeframes(np.ascontiguousarray(pcm).tobytes())

    return _atomic_write(Path(path), write, overwrite=overwrite)


ProgressFn = Callable[[int, int], None]
"""``progress(done_frames, total_frames)`` while a long WAV is written."""


def write_wav_blocks(
    blocks: Callable[[], Iterable[tuple[int, np.ndarray]]],
    sample_rate: int,
    path: str | os.PathLike[str],
    *,
    total_frames: int | None = None,
    normalize: bool = True,
    peak_dbfs: float = -1.0,
    overwrite: bool = True,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Path:
    """Write audio that arrives block by block (``blocks()`` yields ``(first_frame, float [n, channels])``,
    e.g. ``Synthesizer.render_blocks``) as 16-bit PCM WAV in constant memory.

    With ``normalize`` the blocks are drawn twice: once to find the peak, once to write them scaled to
    ``peak_dbfs`` (the renderer must give the same samples both times, as ``render_blocks`` does); silence is
    never amplified. ``cancel()`` is checked between blocks and raises :class:`app.jobs.Cancelled`, leaving
    no file behind.
    """
    from app.audio import SILENCE_PEAK
    from app.jobs import Cancelled

    passes = 2 if normalize else 1
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if cancel is not None and cancel():
            raise Cancelled()
        if progress is not None and total_frames:
            progress(min(done[0], passes * total_frames), passes * total_frames)

    gain = 1.0
    if normalize:
        peak = 0.0
        for _start, block in blocks():
            if block.size:
                peak = max(peak, float(np.max(np.abs(block))))
            tick(len(block))
        if peak >= SILENCE_PEAK:
            gain = 10.0 ** (peak_dbfs / 20.0) / peak

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as wf:
            wf.setsampwidth(2)
            wf.setframerate(int(sample_rate))
            channels = None
            for _start, block in blocks():
                buf = np.asarray(block, dtype=np.float32)
                if buf.ndim == 1:
                    buf = buf[:, None]
                if channels is None:
                    channels = buf.shape[1]
                    wf.setnchannels(channels)
                if not np.isfinite(buf).all():
                    raise ValueError("the audio contains NaN or infinite samples")
                if gain != 1.0:
                    buf = buf * np.float32(gain)
                wf.writeframes(np.ascontiguousarray(_to_int16(buf)).tobytes())
                tick(len(buf))
            if channels is None:
                wf.setnchannels(2)

    return _atomic_write(Path(path), write, overwrite=overwrite)


def next_index(folder: str | os.PathLike[str], stem: str = "lnf") -> int:
    """One more than the highest ``<stem>_<number>.<ext>`` already in ``folder`` (1 for a new folder)."""
    pattern = re.compile(rf"^{re.escape(stem)}_(\d+)\.[A-Za-z0-9]+$")
    folder = Path(folder)
    if not folder.is_dir():
        return 1
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return max(numbers, default=0) + 1


def export_batch(
    rolls: Iterable[np.ndarray],
    folder: str | os.PathLike[str],
    stem: str = "lnf",
    formats: Sequence[str] = ("mid",),
    synth: Synthesizer | None = None,
    *,
    sample_rate: int | None = None,
    normalize: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    velocities: Sequence[np.ndarray | None] | None = None,
    per_roll: Sequence[dict[str, Any]] | None = None,
    **midi_kwargs: Any,
) -> list[Path]:
    """Export generated rolls as numbered files ``<stem>_001.mid`` (and ``.wav``) in ``folder``.

    Numbering continues after the highest number already there; all formats of one roll share its number and
    nothing existing is overwritten. ``formats`` is any of ``"mid"`` and ``"wav"``; WAV needs a
    :class:`app.audio.Synthesizer` (one is created when ``synth`` is None, which raises
    :class:`app.audio.AudioUnavailable` when sound cannot be rendered) and is written at ``sample_rate`` (default:
    the synth's) block by block, so a long piece needs little memory. ``midi_kwargs`` go to
    :func:`lnf_core.pianoroll.roll_to_midi`, updated for the i-th roll by ``per_roll[i]`` (e.g. its own
    ``steps_per_beat``, ``time_signature`` and ``key``). ``progress(done, total, message)`` (``done`` of
    ``total`` = 1000) reports along the way; ``cancel()`` is checked between blocks and pieces and raises
    :class:`app.jobs.Cancelled`, removing the files of the piece being written. ``velocities`` (one grid or
    None per roll) gives edited pieces their notes' velocities. Returns the written paths in order (roll by roll,
    format by format).
    """
    fmts = [f.lower().lstrip(".") for f in formats]
    fmts = list(dict.fromkeys("mid" if f in ("midi", "mid") else f for f in fmts))
    unknown = [f for f in fmts if f not in EXPORT_FORMATS]
    if unknown or not fmts:
        raise ValueError(f"formats must be a non-empty selection of {EXPORT_FORMATS}, got {list(formats)}")
    if not stem or re.search(r"[\\/:*?\"<>|]", stem):
        raise ValueError(f"invalid file name stem {stem!r}")
    own_synth = None
    if "wav" in fmts and synth is None:
        from app.audio import Synthesizer

        synth = own_synth = Synthesizer(sample_rate=sample_rate or DEFAULT_SAMPLE_RATE)
    if sample_rate is None:
        sample_rate = synth.sample_rate if synth is not None else DEFAULT_SAMPLE_RATE
    try:
        return _export_numbered(rolls, Path(folder), stem, fmts, synth, sample_rate, normalize, midi_kwargs,
                                progress, cancel, velocities, list(per_roll) if per_roll is not None else None)
    finally:
        if own_synth is not None:
            own_synth.close()


def _export_numbered(
    rolls: Iterable[np.ndarray],
    folder: Path,
    stem: str,
    fmts: list[str],
    synth: Synthesizer | None,
    sample_rate: int,
    normalize: bool,
    midi_kwargs: dict[str, Any],
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    velocities: Sequence[np.ndarray | None] | None = None,
    per_roll: list[dict[str, Any]] | None = None,
) -> list[Path]:
    from app.jobs import Cancelled

    written: list[Path] = []
    index = next_index(folder, stem)
    rolls = list(rolls)
    n = len(rolls)
    for i, roll in enumerate(rolls):
        if cancel is not None and cancel():
            raise Cancelled()
        if progress is not None:
            progress(1000 * i // max(1, n), 1000, f"Exporting piece {i + 1} of {n}…")
        extra = per_roll[i] if per_roll is not None and i < len(per_roll) else {}
        pm = _to_midi(roll, velocities[i] if velocities is not None else None, {**midi_kwargs, **extra})

        def wav_progress(done: int, total: int, i: int = i) -> None:
            if progress is not None:
                progress(int(1000 * (i + done / max(1, total)) / max(1, n)), 1000,
                         f"Rendering piece {i + 1} of {n}: {100 * done // max(1, total)}%")

        while True:
            width = max(3, len(str(index)))
            name = f"{stem}_{index:0{width}d}"
            targets = {f: folder / f"{name}.{f}" for f in fmts}
            if folder.is_dir() and any(folder.glob(f"{glob.escape(name)}.*")):  # the number is taken
                index += 1
                continue
            done: list[Path] = []
            try:
                for fmt, target in targets.items():
                    if fmt == "mid":
                        done.append(_atomic_write(target, _midi_writer(pm), overwrite=False))
                    else:
                        assert synth is not None
                        done.append(write_wav_blocks(
                            lambda pm=pm: synth.render_blocks(pm, sample_rate), sample_rate, target,
                            total_frames=synth.total_frames(pm, sample_rate), normalize=normalize,
                            overwrite=False, progress=wav_progress, cancel=cancel,
                        ))
            except FileExistsError:  # another exporter took the number meanwhile: undo this set, move on
                for p in done:
                    p.unlink(missing_ok=True)
                index += 1
                continue
            except BaseException:  # cancelled or failed half-way: no half set of files stays behind
                for p in done:
                    p.unlink(missing_ok=True)
                raise
            written.extend(done)
            index += 1
            break
    return written
