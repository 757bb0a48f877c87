"""Import Procgen without the unmaintained-gym notice it prints on import.

procgen imports the old ``gym`` package, which writes a deprecation notice to
stderr; our users never asked for gym, so the notice is swallowed here.
"""

from __future__ import annotations

import contextlib
import io
from types import ModuleType


def import_procgen() -> ModuleType:
    """Return the ``procgen`` module, imported quietly."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        import procgen
    return procgen
