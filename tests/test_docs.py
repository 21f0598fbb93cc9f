"""The documentation's links lead somewhere: every relative link in the README and docs names a file that git
tracks (a link into an ignored folder would work on the author's machine and nowhere else)."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@functools.cache
def _tracked() -> set[str] | None:
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return set(out.splitlines())


def _documents() -> list[Path]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "assets").rglob("*.md"))]
    return [p for p in docs if p.is_file()]


def relative_links(text: str) -> list[str]:
    links = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, mailto:, in-page anchors
        links.append(unquote(target.split("#", 1)[0]))
    return links


def test_the_link_finder_sees_relative_links_only():
    text = "[a](docs/x.md) [b](https://e.org/y) [c](#top) ![d](pic.png \"t\") [e](runs/r/#part)"
    assert relative_links(text) == ["docs/x.md", "pic.png", "runs/r/"]


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_names_a_file_git_keeps(doc: Path):
    tracked = _tracked()
    if tracked is None:
        pytest.skip("not a git checkout (an installed copy): nothing to compare the links with")
    missing = []
    for link in relative_links(doc.read_text(encoding="utf-8")):
        target = (doc.parent / link).resolve()
        try:
            rel = target.relative_to(ROOT).as_posix()
        except ValueError:
            missing.append(f"{link} (outside the project)")
            continue
        if link.endswith("/") or target.is_dir():
            if not any(name.startswith(rel.rstrip("/") + "/") for name in tracked):
                missing.append(f"{link} (no tracked file in it)")
        elif rel not in tracked:
            missing.append(f"{link} ({'ignored by git' if target.exists() else 'no such file'})")
    assert not missing, f"{doc.relative_to(ROOT)} links to: " + ", ".join(missing)
