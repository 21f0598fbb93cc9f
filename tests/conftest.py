"""Shared test set-up.

Environment first: Qt must get a platform before any QApplication exists (without a display it aborts
the whole session), and PortAudio reads the ALSA configuration when ``sounddevice`` is imported, so the
null sink is configured here, before any test module imports it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

_ALSA_HOME = Path(tempfile.mkdtemp(prefix="lnf-alsa-"))
(_ALSA_HOME / "alsa").mkdir()
(_ALSA_HOME / "alsa" / "asoundrc").write_text("pcm.!default {\n    type null\n}\n")
os.environ.setdefault("XDG_CONFIG_HOME", str(_ALSA_HOME))
# Keep user settings (QSettings, data dirs) of the person running the tests untouched.
os.environ.setdefault("LNF_STUDIO_TEST", "1")
# ... and their own trained models and training runs (the app's user folders).
os.environ.setdefault("LNF_MODELS_DIR", str(_ALSA_HOME / "models"))
os.environ.setdefault("LNF_RUNS_DIR", str(_ALSA_HOME / "runs"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny models: one thread avoids OpenMP hand-offs that cost milliseconds per op (and far
    more when the 2-core box is busy). Restored afterwards for the rest of the session."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The benchmark data beside the clone (``../shared/data``); skip when a fresh clone lacks it."""
    if not (SHARED_DATA / "music").is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA} (only present on CI and dev machines)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def jsb_pickle() -> Path:
    """JSB Chorales ships in the repository, so this never skips."""
    path = REPO_ROOT / "assets" / "data" / "JSB_Chorales.pickle"
    assert path.is_file(), f"{path} must ship with the repository"
    return path
