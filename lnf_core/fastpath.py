"""One switch for the optimised code paths of the model, so that tests and benchmarks can run the straightforward
ones beside them in the same process.

Optimised paths (each computes the same function as the plain code; ``tests/lnf_core/test_fastpath.py`` checks that):

* ``lnf_core.stepgrad``: weight gradients of the IAF density loop summed over the steps in one product;
* ``lnf_core.fused``: hand-written backward passes of NLSq data -> noise and of the LSTM cell in that loop;
* ``lnf_core.transforms``: the float64 part of the NLSq inverse in NumPy (CPU, no gradients);
* ``lnf_core.flows``: masked MADE weights computed once per sampling call instead of once per sweep;
* ``lnf_core.model``: the fused readout matrix cached between calls.

Reduced precision (``lnf_core.precision``) is not part of this switch: it is chosen per call (``precision=``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_STATE = {"on": True}


def enabled() -> bool:
    return _STATE["on"]


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within the block every optimised path above is off (the plain code runs)."""
    old = _STATE["on"]
    _STATE["on"] = False
    try:
        yield
    finally:
        _STATE["on"] = old
