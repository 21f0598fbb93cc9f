"""LNF Studio's Qt user interface (the domain code it drives, Qt-free: :mod:`app.models`, :mod:`app.generation`,
:mod:`app.latent`, :mod:`app.pieces`)."""
