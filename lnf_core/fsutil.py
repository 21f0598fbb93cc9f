"""Atomic file writes, shared by checkpoints, training runs, dataset caches and exports (standard library only,
so importing it costs no torch).

A file is written to a temporary file beside it (``.NAME.<random><suffix>``, ``.tmp`` unless told otherwise),
flushed to disk, given the permissions of a freshly created file (``mkstemp`` makes 0600), and renamed over the
target: a reader or a crash never sees half a file under the real name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

TMP_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], *, overwrite: bool = True,
                 suffix: str = TMP_SUFFIX) -> Path:
    """Run ``write(tmp_path)`` on a temporary file beside ``path`` and rename it to ``path``; returns ``path``.

    The folder is created if need be. With ``overwrite=False`` an existing ``path`` is never replaced (the final
    step is a hard link, which fails when the name is taken, where the file system supports it) and
    :class:`FileExistsError` is raised. Whatever happens, the temporary file does not stay behind (unless the
    process is killed: :func:`remove_stale_temporaries` clears those).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
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
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (temporary file ``.NAME.*.tmp`` beside it, fsync, then rename)."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files (``.NAME.*.tmp``) that writes of the files ``names`` in ``folder`` leave behind
    when the process is killed mid-write; returns what was removed."""
    folder = Path(folder)
    removed = []
    for name in names:
        for tmp in folder.glob(f".{name}.*{TMP_SUFFIX}"):
            try:
                if tmp.is_file():
                    tmp.unlink()
                    removed.append(tmp)
            except OSError:
                pass
    return removed
