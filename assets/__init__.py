"""What ships with LNF Studio besides the code: the trained models (``models/``) and JSB Chorales (``data/``).

``assets`` is a package so that an installed LNF Studio (``pip install .``, a wheel) carries these files as
package data. Every lookup of them goes through the helpers below, which start from this package's location:
the repository's ``assets/`` folder in a checkout, ``site-packages/assets`` in an installed copy.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def models_dir() -> Path:
    """The shipped models (``*.lnf``, ``default.json`` naming the default one, ``README.md`` model cards)."""
    return ROOT / "models"


def data_dir() -> Path:
    """The shipped datasets (``JSB_Chorales.pickle``)."""
    return ROOT / "data"
