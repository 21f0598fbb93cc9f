"""Module docstrings as plain text for ``--help``: the reST markup (double backticks, ``**bold**``, ``::`` before
a literal block) is dropped."""

from __future__ import annotations

import re


def plain(doc: str | None) -> str:
    text = doc or ""
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"::(\s*\n)", r":\1", text)
    return text.strip()
