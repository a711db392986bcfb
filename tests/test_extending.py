"""The recipes of docs/extending.md run: each section's python block, found by its heading."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from hamgrad.data import load_dataset
from hamgrad.errors import DatasetError
from simulators import System, generate, system_from_dataset

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def section_code(heading: str) -> str:
    """The (first) python code block under the ``## heading`` of docs/extending.md."""
    text = DOC.read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/extending.md has no section '## {heading}'"
    block = re.search(r"^```python\n(.*?)^```", match.group(1), re.S | re.M)
    assert block, f"section '## {heading}' of docs/extending.md has no python code block"
    return block.group(1)


def load_section(
    heading: str, module_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """Write a section's code to ``tmp_path/<module_name>.py`` and import it as that module."""
    path = tmp_path / f"{module_name}.py"
    path.write_text(section_code(heading))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module


def test_add_a_system(tmp_path, monkeypatch):
    module = load_section("Add a system", "my_system", tmp_path, monkeypatch)
    cls = module.QuarticOscillator
    assert issubclass(cls, System)
    system = cls(a=2.0)
    assert type(system)(**system.params) == system
    path = generate(
        system, tmp_path / "quartic.h5", n_train=3, n_val=0, n_test=1, n_steps=20, dt=0.1
    )
    ds = load_dataset(path)
    assert ds.system == "my_system:QuarticOscillator"
    assert ds.system_params == {"m": 1.0, "a": 2.0, "amplitude": 1.0}
    assert ds["train"].q.shape == (3, 21, 1)
    with pytest.raises(DatasetError, match=r"--system my_system:QuarticOscillator"):
        system_from_dataset(ds)
    assert system_from_dataset(ds, trusted_system="my_system:QuarticOscillator") == system
    assert ds["train"].attrs["max_rel_energy_error"] < 1e-10
    # A quartic oscillator released at rest: q(t) stays within the amplitude it started at.
    assert np.all(np.abs(ds["test"].q) <= np.abs(ds["test"].q[:, :1]) * (1 + 1e-9))
