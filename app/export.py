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
import tempfile
import wave
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pretty_midi

from app.audio import DEFAULT_SAMPLE_RATE, peak_normalize
from lnf_core.pianoroll import roll_to_midi

if TYPE_CHECKING:
    from app.audio import Synthesizer

EXPORT_FORMATS = ("mid", "wav")


class ExportError(OSError):
    """A file could not be written; the message names it and the reason."""


def _atomic_write(path: Path, write: Callable[[Path], None], *, overwrite: bool = True) -> Path:
    """Run ``write(tmp_path)`` on a temporary file beside ``path`` and rename it to ``path``.

    With ``overwrite=False`` an existing ``path`` is never replaced (the final step is a hard link, which fails
    when the name is taken, where the file system supports it) and :class:`FileExistsError` is raised.
    """
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"Could not create the folder {folder} for {path.name}: {exc.strerror or exc}") from exc
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{path.suffix}.part", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic and fails if the name exists
            except FileExistsError:
                raise
            except OSError:  # no hard links here (e.g. FAT, some network shares)
                if path.exists():
                    raise FileExistsError(path) from None
                os.replace(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        raise ExportError(f"Could not write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _midi_writer(pm: pretty_midi.PrettyMIDI) -> Callable[[Path], None]:
    return lambda tmp: pm.write(str(tmp))


def write_midi(roll: np.ndarray, path: str | os.PathLike[str], *, overwrite: bool = True, **midi_kwargs: Any) -> Path:
    """Write a roll as a Standard MIDI File; ``midi_kwargs`` go to :func:`lnf_core.pianoroll.roll_to_midi`
    (``tempo_bpm``, ``steps_per_beat``, ``program``, ``velocity``, ``merge_repeats``, ``humanize`` ...)."""
    pm = roll_to_midi(roll, **midi_kwargs)
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
    per_roll: Sequence[dict[str, Any]] | None = None,
    **midi_kwargs: Any,
) -> list[Path]:
    """Export generated rolls as numbered files ``<stem>_001.mid`` (and ``.wav``) in ``folder``.

    Numbering continues after the highest number already there; all formats of one roll share its number and
    nothing existing is overwritten. ``formats`` is any of ``"mid"`` and ``"wav"``; WAV needs a
    :class:`app.audio.Synthesizer` (one is created when ``synth`` is None, which raises
    :class:`app.audio.AudioUnavailable` when sound cannot be rendered) and is written at ``sample_rate`` (default:
    the synth's). ``midi_kwargs`` go to :func:`lnf_core.pianoroll.roll_to_midi`, updated for the i-th roll by
    ``per_roll[i]`` (e.g. its own ``steps_per_beat``, ``time_signature`` and ``key``). Returns the written paths in
    order (roll by roll, format by format).
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
                                list(per_roll) if per_roll is not None else None)
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
    per_roll: list[dict[str, Any]] | None = None,
) -> list[Path]:
    written: list[Path] = []
    index = next_index(folder, stem)
    for i, roll in enumerate(rolls):
        extra = per_roll[i] if per_roll is not None and i < len(per_roll) else {}
        pm = roll_to_midi(roll, **{**midi_kwargs, **extra})
        audio = synth.render(pm, sample_rate) if "wav" in fmts and synth is not None else None
        while True:
            width = max(3, len(str(index)))
            name = f"{stem}_{index:0{width}d}"
            targets = {f: folder / f"{name}.{f}" for f in fmts}
            if folder.is_dir() and any(folder.glob(f"{glob.escape(name)}.*")):  # the number is taken
                index += 1
                continue
            try:
                done: list[Path] = []
                for fmt, target in targets.items():
                    if fmt == "mid":
                        done.append(_atomic_write(target, _midi_writer(pm), overwrite=False))
                    else:
                        assert audio is not None
                        done.append(write_wav(audio, sample_rate, target, normalize=normalize, overwrite=False))
            except FileExistsError:  # another exporter took the number meanwhile: undo this set, move on
                for p in done:
                    p.unlink(missing_ok=True)
                index += 1
                continue
            written.extend(done)
            index += 1
            break
    return written
