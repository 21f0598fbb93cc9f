"""The benchmark datasets of the paper: file names, split sizes, time grid and where to get them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .types import DataError

_BL_SOURCE = (
    "Boulanger-Lewandowski, Bengio & Vincent (ICML 2012) polyphonic music pickles, originally at "
    "http://www-etud.iro.umontreal.ca/~boulanni/icml2012 (host offline; archived copies exist on the Wayback "
    "Machine). Any copy with the same dict train/valid/test layout works."
)


@dataclass(frozen=True)
class DatasetSpec:
    """One known dataset.

    ``split_counts`` are the published numbers of pieces (or PTB lines) per split; a file whose counts differ
    is rejected. ``steps_per_beat`` is the time grid of the pickles (JSB: quarter notes; others: eighths).
    ``redistributable`` is False where the licence keeps the data (and so models trained on it) out of what
    LNF Studio ships: ``python -m train.ship`` refuses such models.
    """

    name: str
    title: str
    kind: str  # "music" | "text"
    filenames: tuple[str, ...]  # first = canonical name used when adding a file
    split_counts: tuple[tuple[str, int], ...]
    steps_per_beat: int | None
    aliases: tuple[str, ...]
    source: str
    licence: str
    redistributable: bool = True

    @property
    def filename(self) -> str:
        return self.filenames[0]

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.split_counts)

    def counts_text(self) -> str:
        return " / ".join(f"{s} {n}" for s, n in self.split_counts)


def _counts(train: int, valid: int, test: int) -> tuple[tuple[str, int], ...]:
    return (("train", train), ("valid", valid), ("test", test))


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "jsb", "JSB Chorales", "music",
            ("JSB_Chorales.pickle", "JSB Chorales.pickle", "jsb_chorales.pickle"),
            _counts(229, 76, 77), 1, ("jsb_chorales", "jsbchorales", "chorales", "bach"),
            _BL_SOURCE + " A copy ships with LNF Studio (assets/data/JSB_Chorales.pickle).",
            "Bach's chorales are public domain; splits follow Allan & Williams (NIPS 2005).",
        ),
        DatasetSpec(
            "nottingham", "Nottingham", "music",
            ("Nottingham.pickle", "nottingham.pickle"),
            _counts(694, 173, 170), 2, ("nott", "nottingham_folk"),
            _BL_SOURCE, "Eric Foxley's Nottingham folk-tune database; no explicit licence (research use).",
        ),
        DatasetSpec(
            "musedata", "MuseData", "music",
            ("MuseData.pickle", "musedata.pickle"),
            _counts(524, 135, 124), 2, ("muse", "muse_data"),
            _BL_SOURCE,
            "CCARH MuseData licence (http://www.musedata.org/legal/lcr.html): academic research and personal "
            "use only, acknowledge CCARH.",
            redistributable=False,
        ),
        DatasetSpec(
            "pianomidi", "Piano-midi.de", "music",
            ("Piano-midi.de.pickle", "Piano_midi.pickle", "piano_midi.pickle", "piano-midi.de.pickle"),
            _counts(87, 12, 25), 2, ("piano-midi", "piano-midi.de", "piano_midi", "piano"),
            _BL_SOURCE,
            "Bernd Krueger's piano-midi.de (see http://piano-midi.de/copy.htm; reportedly CC BY-SA Germany); "
            "check before redistributing.",
            redistributable=False,
        ),
        DatasetSpec(
            "ptb", "Penn Treebank (characters)", "text",
            ("ptb.char.train.txt", "ptb.char.valid.txt", "ptb.char.test.txt"),
            _counts(42068, 3370, 3761), None, ("ptb_char", "ptb-char", "penn", "penntreebank", "ptbchar"),
            "Mikolov's character-level PTB, ptb.char.{train,valid,test}.txt from simple-examples.tgz "
            "(http://www.fit.vutbr.cz/~imikolov/rnnlm/).",
            "Wall Street Journal text of the Penn Treebank (LDC99T42); research use only.",
        ),
    )
}  # fmt: skip

MUSIC_DATASETS = tuple(n for n, s in DATASETS.items() if s.kind == "music")


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


_BY_KEY: dict[str, str] = {}
for _spec in DATASETS.values():
    for _key in (_spec.name, _spec.title, *_spec.aliases, *(f.rsplit(".", 1)[0] for f in _spec.filenames)):
        _BY_KEY.setdefault(_norm(_key), _spec.name)


def lookup_dataset(name: str) -> DatasetSpec | None:
    """The spec for a dataset name or alias (case, spaces, dashes and dots ignored), else None."""
    key = _BY_KEY.get(_norm(name))
    return DATASETS[key] if key else None


def own_dataset_name(stem: str) -> str:
    """The name of a user's own dataset (a MIDI folder, an unknown pickle): its file or folder name, unless that
    reads as a known dataset ("piano", "bach"...), which would make evaluation load the wrong data and the
    licence check misfire; then " (own)" is appended."""
    stem = stem or "midi"
    return f"{stem} (own)" if lookup_dataset(stem) is not None else stem


def get_dataset_spec(name: str) -> DatasetSpec:
    """Like :func:`lookup_dataset` but raises :class:`DataError` listing the known names."""
    spec = lookup_dataset(name)
    if spec is None:
        known = ", ".join(DATASETS)
        raise DataError(
            f"unknown dataset {name!r}. Known datasets: {known}; or give the path of a music .pickle file "
            "or of a folder of MIDI files."
        )
    return spec


def spec_for_filename(filename: str) -> DatasetSpec | None:
    """The music dataset a file name belongs to (e.g. ``JSB_Chorales.pickle``), else None."""
    for spec in DATASETS.values():
        if spec.kind == "music" and filename.lower() in (f.lower() for f in spec.filenames):
            return spec
    return None


def identify_music_by_counts(counts: dict[str, int]) -> DatasetSpec | None:
    """The music dataset whose published split counts equal ``counts``, else None."""
    for spec in DATASETS.values():
        if spec.kind == "music" and spec.counts == {s: counts.get(s) for s in spec.counts}:
            return spec
    return None
