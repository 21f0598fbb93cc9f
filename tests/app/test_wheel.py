"""``pip install .`` works: a normal (non-editable) wheel carries the shipped models and JSB Chorales, and the
installed package generates music from outside the repository with no arguments but ``--out``.

The wheel is built offline with the build backend of this environment (``--no-build-isolation``), installed with
``--no-deps`` into a fresh virtual environment that sees this environment's packages (torch, numpy, ...) through a
``.pth`` line (which adds the folder to ``sys.path`` without running that folder's own ``.pth`` files, so an
editable install of a checkout there stays inactive), and run from a temporary folder: the repository checkout is
not on ``sys.path``, which the test checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _build_backend_available() -> str | None:
    try:
        import setuptools
    except ImportError:
        return "setuptools is not installed in this environment"
    major = int(setuptools.__version__.split(".")[0])
    if major < 77:
        return f"setuptools {setuptools.__version__} is older than the 77 pyproject.toml requires"
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    reason = _build_backend_available()
    if reason:
        pytest.skip(f"cannot build the wheel offline: {reason} (an online `pip wheel .` would fetch it)")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    for pkg in ("app", "lnf_core", "train", "assets"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".lnf-cache"))
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", str(src), "-w", str(dist)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "deprecat" not in (proc.stdout + proc.stderr).lower(), proc.stderr[-3000:]
    wheels = list(dist.glob("lnf_studio-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_carries_the_models_and_the_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"assets/models/{p.name}" for p in (REPO / "assets" / "models").iterdir() if p.is_file()}
    assert shipped <= names, shipped - names
    assert "assets/data/JSB_Chorales.pickle" in names and "assets/__init__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert {n.split("/")[0] for n in names} == {"app", "assets", "lnf_core", "train", wheel.name.split("-")[0] + "-"
                                                + wheel.name.split("-")[1] + ".dist-info"}
    # the shipped models (< 20 MiB each, float16; four of ~12.5 MiB) and the code: the wheel stays a normal download
    size = wheel.stat().st_size
    assert size < 64 * 2**20, size


def test_installed_wheel_generates_from_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "lnf_test_deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    assert (venv / "bin" / "lnf-studio").is_file() and (venv / "bin" / "lnf-train").is_file()  # the entry points

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(OMP_NUM_THREADS="1", LNF_STUDIO_THREADS="1")
    where = subprocess.run([str(python), "-c", (
        "import sys, app, assets, lnf_core, train\n"
        "from app import models\n"
        "from train.datasets.locations import find_dataset_file\n"
        "print(app.__file__); print(assets.__file__); print(lnf_core.__file__); print(train.__file__)\n"
        "print(models.MODELS_DIR); print(find_dataset_file('jsb'))\n"
        "print('PATH', *sys.path, sep='|')\n")], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr[-3000:]
    lines = where.stdout.strip().splitlines()
    installed = Path(site).resolve()
    for line in lines[:6]:
        assert Path(line).resolve().is_relative_to(installed), (line, installed)
    assert not any(p and Path(p).resolve() == REPO.resolve() for p in lines[6].split("|")[1:]), lines[6]

    out = work / "out"
    gen = subprocess.run([str(python), "-m", "app.generate", "--out", str(out)], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert gen.returncode == 0, gen.stdout[-2000:] + gen.stderr[-3000:]
    midis = sorted(out.glob("*.mid"))
    assert len(midis) == 8 and all(p.stat().st_size > 50 for p in midis), gen.stdout
    from lnf_core.pianoroll import midi_to_roll

    assert midi_to_roll(midis[0], steps_per_beat=1).any()
