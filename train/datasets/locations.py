"""Where dataset files live.

Data directory: ``--data-dir`` if given, else ``$LNF_DATA_DIR``, else the per-user data dir
(``$XDG_DATA_HOME/lnf-studio/data``, default ``~/.local/share/lnf-studio/data``). A dataset is looked up in
that dir (and its ``music/`` and ``ptb/`` subfolders), then in the shipped ``assets/data`` (JSB ships there; the
``assets`` package, so an installed copy has it too), then in ``../shared/data`` beside the repository
(development and CI machines).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import assets

from .registry import DatasetSpec, get_dataset_spec
from .text import PTB_FILES
from .types import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS_DATA = assets.data_dir()  # JSB ships as package data: found from a checkout and from an installed wheel
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
APP_DIR_NAME = "lnf-studio"


def _user_base(xdg_var: str, macos: str, default: str) -> Path:
    """A per-user base folder: ``$xdg_var`` when absolute, else the platform's usual place."""
    xdg = os.environ.get(xdg_var)
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"])
    if sys.platform == "darwin":
        return Path.home() / "Library" / macos
    return Path.home() / default


def user_data_dir() -> Path:
    """The per-user data folder: ``$XDG_DATA_HOME/lnf-studio/data`` (default ``~/.local/share/...``)."""
    return _user_base("XDG_DATA_HOME", "Application Support", ".local/share") / APP_DIR_NAME / "data"


def user_cache_dir() -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/lnf-studio`` (default ``~/.cache/lnf-studio``)."""
    return _user_base("XDG_CACHE_HOME", "Caches", ".cache") / APP_DIR_NAME


def resolve_data_dir(cli_value: str | Path | None = None) -> Path:
    """The data directory: the ``--data-dir`` value, else ``$LNF_DATA_DIR``, else :func:`user_data_dir`."""
    if cli_value:
        return Path(cli_value).expanduser()
    env = os.environ.get("LNF_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return user_data_dir()


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for dataset files, in order (see module doc)."""
    base = resolve_data_dir(data_dir)
    dirs = [base, base / "music", base / "ptb", ASSETS_DATA, SHARED_DATA, SHARED_DATA / "music", SHARED_DATA / "ptb"]
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def _how_to_get(spec: DatasetSpec, data_dir: Path) -> str:
    if spec.kind == "text":
        add = "python -m train.data add ptb.char.train.txt ptb.char.valid.txt ptb.char.test.txt"
        where = data_dir / "ptb"
    else:
        add = f"python -m train.data add /path/to/{spec.filename}"
        where = data_dir / "music"
    return (
        f"Get it from: {spec.source}\nLicence: {spec.licence}\n"
        f"Then add it with:  {add}\n(or copy it into {where}, or point --data-dir / LNF_DATA_DIR at its folder)."
    )


def locate_dataset(name: str, data_dir: str | Path | None = None) -> Path | None:
    """Like :func:`find_dataset_file` but returns None when the dataset is not present."""
    spec = get_dataset_spec(name)
    for d in search_dirs(data_dir):
        if spec.kind == "text":
            if all((d / f).is_file() for f in PTB_FILES.values()):
                return d
        else:
            for fname in spec.filenames:
                if (d / fname).is_file():
                    return d / fname
    return None


def find_dataset_file(name: str, data_dir: str | Path | None = None) -> Path:
    """Path of a known dataset's file (for PTB: the folder holding ``ptb.char.*.txt``).

    Looks in ``data_dir`` (resolved by :func:`resolve_data_dir`), ``data_dir/music``, ``data_dir/ptb``, the
    repository's ``assets/data``, then ``../shared/data`` next to the repository. Raises :class:`DataError`
    listing where it looked, where to obtain the data and how to add it.
    """
    spec = get_dataset_spec(name)
    found = locate_dataset(spec.name, data_dir)
    if found is not None:
        return found
    base = resolve_data_dir(data_dir)
    looked = "\n".join(f"  {d}" for d in search_dirs(data_dir))
    wanted = "ptb.char.{train,valid,test}.txt" if spec.kind == "text" else spec.filename
    partial = ""
    if spec.kind == "text":
        for d in search_dirs(data_dir):
            have = [f for f in PTB_FILES.values() if (d / f).is_file()]
            if have:
                partial = f"\nNote: {d} has only {', '.join(have)}; all three files are needed.\n"
                break
    raise DataError(
        f"Dataset '{spec.name}' ({spec.title}, {wanted}) was not found. Looked in:\n{looked}\n{partial}"
        f"{_how_to_get(spec, base)}",
        base,
    )
