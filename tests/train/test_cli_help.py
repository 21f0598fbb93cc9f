"""``--help`` of the command-line tools: every option explained, plain text (no reST markup), examples, and no
reference to documents that are not in the repository."""

from __future__ import annotations

import argparse
import importlib

import pytest

import train.__main__ as train_cli
import train.evaluate as evaluate_cli

RAW_MARKUP = ("``", "::", "**", "paper-notes")


@pytest.mark.parametrize("parser", [train_cli.build_parser(), evaluate_cli.build_parser()],
                         ids=["train", "train.evaluate"])
def test_every_option_has_help_and_the_text_is_plain(parser: argparse.ArgumentParser) -> None:
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
               if not isinstance(a, argparse._HelpAction) and (not a.help or a.help == argparse.SUPPRESS)]
    assert not missing, f"options without help: {missing}"
    text = parser.format_help()
    for markup in RAW_MARKUP:
        assert markup not in text, markup
    assert "examples:" in text and "python -m" in text


@pytest.mark.parametrize("module", ["train.report", "train.bench", "train.ship", "train.musicstats", "train.sample",
                                    "train.archive", "train.sampletime"])
def test_other_tools_describe_themselves_in_plain_text(module: str, capsys) -> None:
    with pytest.raises(SystemExit):
        importlib.import_module(module).main(["--help"])
    text = capsys.readouterr().out
    assert "usage:" in text
    for markup in ("``", "::", "**"):
        assert markup not in text, (module, markup)
