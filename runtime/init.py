"""Param initializers on the host: the runtime draws each param's first values (seeded) from
the compiler's one table of initializers, `netc.compiler.initializers`, which also validates
them when a program is checked. Kept as the runtime's import point until `runtime/model.py`
imports `initialize` from there directly."""
from __future__ import annotations

from netc.compiler.initializers import fans, initialize

__all__ = ["fans", "initialize"]
