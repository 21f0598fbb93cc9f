"""LNF Studio's Qt user interface (the domain code it drives lives in :mod:`app.session`)."""

from app.ui.qtfix import protect_none

protect_none()  # PySide6 6.12 on CPython 3.11 leaks references to None (see app/ui/qtfix.py)
