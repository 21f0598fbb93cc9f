"""Speed benchmarks of the library (``python -m benchmarks.bench``); not part of the installed package."""
