"""Benchmark data for the latent-normalizing-flow models (Ziegler & Rush 2019, §4 and §5.3 of the notes).

The public entry point is :mod:`train.data`; the modules here hold its parts:

- :mod:`.types`: the dataset containers (:class:`MusicDataset`, :class:`TextDataset`) and :class:`DataError`.
- :mod:`.safe_pickle`: the restricted unpickler for the Boulanger-Lewandowski pickles.
- :mod:`.registry`: the known datasets (file names, split counts, time grid, where to obtain them).
- :mod:`.music`: polyphonic-music pickles -> boolean piano rolls ``[T, 88]``.
- :mod:`.text`: character-level Penn Treebank -> int64 token sequences.
- :mod:`.locations`: where data lives on disk (``--data-dir``, ``LNF_DATA_DIR``, the per-user dir, ...).
- :mod:`.batching`: length-bucketed, padded mini-batches.
"""
