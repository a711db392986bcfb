"""The README is a promise: its Python examples run as written.

A block whose first line names a file (``# my_module.py``) is written to that file and
imported, as a reader would save and use it; the others are executed as scripts.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def test_the_readme_has_python_examples():
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    code = BLOCKS[index]
    module = re.match(r"# (\w+)\.py\n", code)
    if module is None:
        exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__main__"})
        return
    name = module.group(1)
    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.import_module(name)
