"""Import a benchmark script under scripts/ as a module, for the smoke tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """Execute ``scripts/<name>.py`` and return it as module ``name``.

    ``scripts/`` goes on ``sys.path`` first, as ``python scripts/<name>.py`` puts it, so the
    scripts' shared helper ``_bench`` (and a script another one reuses) imports the same way.
    """
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module
