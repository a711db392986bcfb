"""The recipes of docs/extending.md run: each section's python block, found by its heading."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from hamgrad import models
from hamgrad.checkpoint import load_model
from hamgrad.data import load_dataset
from hamgrad.errors import ConfigError, DatasetError
from hamgrad.integrators import SplittingTableau, register_integrator, registry, rollout
from hamgrad.training import TrainConfig, train
from simulators import Pendulum, System, generate, system_from_dataset

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


@pytest.fixture
def restored_registries():
    """Registries are module-level dicts that other modules hold: restore their contents."""
    saved = [(r, dict(r)) for r in (registry.INTEGRATORS, models.MODELS)]
    yield
    for reg, content in saved:
        reg.clear()
        reg.update(content)


def test_add_an_integrator(tmp_path, monkeypatch, restored_registries):
    module = load_section("Add an integrator", "my_integrator", tmp_path, monkeypatch)
    assert registry.INTEGRATORS["omelyan2"] is module.OMELYAN2
    assert module.OMELYAN2.reversible and module.OMELYAN2.symplectic
    # It converges with the order it claims, against the exact pendulum flow.
    pendulum = Pendulum()
    q0, p0 = np.array([[1.0]]), np.array([[0.5]])
    q_exact, p_exact = pendulum.exact_solution(q0, p0, np.array([2.0]))
    errors = []
    for n in (50, 100, 200):
        traj = rollout(
            pendulum,
            torch.tensor(q0),
            torch.tensor(p0),
            2.0 / n,
            n,
            method="omelyan2",
            save_every=n,
        )
        errors.append(
            abs(float(traj.q[0, -1, 0]) - q_exact[0, 0, 0])
            + abs(float(traj.p[0, -1, 0]) - p_exact[0, 0, 0])
        )
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(orders - 2) < 0.1), (errors, orders)
    # The tableau checks itself: a typo in a coefficient cannot ship.
    with pytest.raises(ConfigError, match="drift coefficients sum to"):
        SplittingTableau("typo", 2, (("D", 0.2), ("K", 1.0), ("D", 0.7)), True, "x")
    with pytest.raises(ConfigError, match="is taken"):
        register_integrator(module.OMELYAN2)


def test_add_a_model(tmp_path, monkeypatch, restored_registries):
    module = load_section("Add a model", "my_model", tmp_path, monkeypatch)
    assert models.MODELS["convex-hnn"] is module.ConvexHamiltonian
    data = generate("spring", tmp_path / "s.h5", n_train=4, n_val=1, n_test=1, n_steps=10, dt=0.1)
    result = train(
        TrainConfig(
            data=str(data),
            model="convex-hnn",
            epochs=2,
            batch_size=16,
            model_params={"hidden": 6},
            runs_dir=str(tmp_path / "runs"),
            name="c",
            dtype="float64",
        )
    )
    model, _ = load_model(result.run_dir)  # rebuilt from the checkpoint by name
    assert isinstance(model, module.ConvexHamiltonian)
    # The registry's structural check: the vector field is exactly J·∇H with ∇H a gradient.
    q = torch.randn(5, 1, dtype=torch.float64, requires_grad=True)
    p = torch.randn(5, 1, dtype=torch.float64, requires_grad=True)
    (gq, gp) = torch.autograd.grad(model.hamiltonian(q, p).sum(), (q, p))
    torch.testing.assert_close(gq, model.dH_dq(q, p))
    torch.testing.assert_close(gp, model.dH_dp(q, p))
