"""Systems: the HamiltonianField contract, registry, exact flows, n-body conservation, REBOUND."""

from __future__ import annotations

import dataclasses
import inspect
import json
import textwrap

import numpy as np
import pytest
import torch

import simulators
from hamgrad import HamiltonianField
from hamgrad.errors import ConfigError, HamgradError
from simulators import (
    ALIASES,
    SYSTEMS,
    Kepler,
    NBody,
    System,
    ThreeBody,
    angular_momentum,
    get_system,
    integrate,
    reference_solution,
    total_momentum,
)

CANONICAL = sorted(SYSTEMS)
EXACT = [n for n in CANONICAL if SYSTEMS[n].exact_method is not None]


def _states(system: System, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = [system.sample_state(rng) for _ in range(n)]
    return np.stack([q for q, _ in pairs]), np.stack([p for _, p in pairs])


def _rel_err(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Max abs difference per trajectory over the trajectory's max magnitude."""
    return np.abs(a - b).max(axis=(1, 2)) / np.abs(b).max(axis=(1, 2))


def test_registry_has_the_contract_names():
    assert set(SYSTEMS) == {"pendulum", "spring", "spring-chain", "double-pendulum", "kepler",
                            "three-body", "nbody"}
    assert ALIASES == {"two-body": "kepler"}
    # Aliases are resolved at lookup, never merged into the registry.
    assert all(cls.name == name for name, cls in SYSTEMS.items())
    assert type(get_system("two-body")) is SYSTEMS["kepler"]
    assert get_system("two-body", m1=2.0) == get_system("kepler", m1=2.0)


@pytest.mark.parametrize("name", CANONICAL)
def test_system_is_a_field_and_rebuilds_from_params(name):
    system = get_system(name)
    assert isinstance(system, HamiltonianField)
    assert system.name == name
    assert type(system)(**system.params) == system
    # params is what a dataset records (JSON); the system rebuilt from it is the same.
    assert type(system)(**json.loads(json.dumps(system.params))) == system
    again = get_system(name, **system.params)
    assert again.params == system.params
    q, p = system.sample_state(np.random.default_rng(1))
    assert q.shape == p.shape == (system.dof,)
    assert q.dtype == p.dtype == np.float64


@pytest.mark.parametrize("name", CANONICAL)
def test_parameters_are_the_frozen_dataclass_fields(name):
    cls = SYSTEMS[name]
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    system = cls()
    assert list(system.params) == [f.name for f in dataclasses.fields(cls) if f.init]
    field = next(iter(system.params))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(system, field, 1)
    assert hash(system) == hash(cls(**system.params))


def test_every_class_is_abstract_or_final():
    classes = {cls for cls in vars(simulators).values() if isinstance(cls, type)
               and issubclass(cls, System)}
    classes |= {base for cls in classes for base in cls.__mro__ if issubclass(base, System)}
    registered = set(SYSTEMS.values())
    for cls in classes:
        if cls in registered:
            assert getattr(cls, "__final__", False), cls
            assert not inspect.isabstract(cls), cls
        else:
            assert inspect.isabstract(cls), cls
    # Siblings, not parent and child: no registered system subclasses another.
    for a in registered:
        for b in registered - {a}:
            assert not issubclass(a, b), (a, b)
    gravity = {SYSTEMS[n].__mro__[1] for n in ("kepler", "three-body", "nbody")}
    assert len(gravity) == 1 and inspect.isabstract(gravity.pop())
    assert SYSTEMS["spring"].__mro__[1] is SYSTEMS["spring-chain"].__mro__[1] \
        is simulators.QuadraticSystem


@pytest.mark.parametrize("name", CANONICAL)
def test_gradients_match_autograd_of_hamiltonian(name):
    system = get_system(name)
    q, p = _states(system, 6)
    q = torch.from_numpy(q).reshape(2, 3, -1)
    p = torch.from_numpy(p).reshape(2, 3, -1)
    gq, gp = System._autograd(system, q, p)
    torch.testing.assert_close(system.dH_dq(q, p), gq, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(system.dH_dp(q, p), gp, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", CANONICAL)
def test_float32_and_batch_shapes(name):
    system = get_system(name)
    q, p = _states(system, 4)
    q32 = torch.from_numpy(q).float().reshape(2, 2, -1)
    p32 = torch.from_numpy(p).float().reshape(2, 2, -1)
    for out in (system.dH_dq(q32, p32), system.dH_dp(q32, p32)):
        assert out.dtype == torch.float32 and out.shape == q32.shape
    energy = system.hamiltonian(q32, p32)
    assert energy.dtype == torch.float32 and energy.shape == (2, 2)


def _separability_violation(system: System, q: torch.Tensor, p: torch.Tensor) -> float:
    """How much dH_dq changes with p and dH_dp with q (0 for a truly separable field)."""
    dq = (system.dH_dq(q, p) - system.dH_dq(q, p + 0.37)).abs().max()
    dp = (system.dH_dp(q, p) - system.dH_dp(q + 0.29, p)).abs().max()
    return float(max(dq, dp))


@pytest.mark.parametrize("name", CANONICAL)
def test_separable_flag_is_true(name):
    system = get_system(name)
    q, p = (torch.from_numpy(a) for a in _states(system, 5))
    violation = _separability_violation(system, q, p)
    if system.separable:
        assert violation == 0.0
    else:  # the check above catches a non-separable field (the double pendulum)
        assert violation > 1e-3


def test_hnn_protocol_parameters():
    """Greydanus et al. (2019): spring H = q² + p², pendulum H = 3(1 - cos q) + p²."""
    q = torch.linspace(-3, 3, 13)[:, None]
    p = torch.linspace(-2, 2, 13)[:, None]
    spring = get_system("spring", m=0.5, k=2.0)
    torch.testing.assert_close(spring.hamiltonian(q, p), (q**2 + p**2)[:, 0])
    pend = get_system("pendulum", m=0.5, g=6.0, l=1.0)
    torch.testing.assert_close(pend.hamiltonian(q, p), (3 * (1 - torch.cos(q)) + p**2)[:, 0])


def test_bad_names_and_params_are_clear():
    with pytest.raises(ConfigError, match=r"unknown system 'pendulumm'.*double-pendulum.*"
                                          r"two-body"):
        get_system("pendulumm")
    with pytest.raises(ConfigError, match=r"unknown parameter 'mass'.*'pendulum'.*m, g, l"):
        get_system("pendulum", mass=1.0)
    with pytest.raises(ConfigError, match=r"g must be a finite positive number, got -1"):
        get_system("pendulum", g=-1)
    with pytest.raises(ConfigError, match=r"masses must be one number or a list of n=3"):
        get_system("nbody", n=3, masses=[1.0, 2.0])
    with pytest.raises(ConfigError, match=r"min_gap=0.5 leaves no room for n-1=9 orbits"):
        get_system("nbody", n=10, min_gap=0.5)
    with pytest.raises(ConfigError, match=r"ends must be 'fixed' or 'periodic'"):
        get_system("spring-chain", ends="open")
    with pytest.raises(ConfigError, match=r"cannot import module 'no_such_mod_xyz'"):
        get_system("no_such_mod_xyz:Thing")


def _exact_cases():
    """Every system with a closed form, with the regimes it must cover."""
    cases = []
    for name in EXACT:
        cases.append((name, {}, 1.0))
    cases += [("pendulum", {"m": 0.5, "g": 6.0}, 1.0),  # HNN pendulum, librating
              ("pendulum", {}, 4.0),  # momenta x4: rotating
              ("spring-chain", {"ends": "periodic", "n": 4}, 1.0)]
    return cases


@pytest.mark.parametrize(("name", "params", "p_scale"), _exact_cases())
def test_exact_solution_matches_dop853_over_100_time_units(name, params, p_scale):
    system = get_system(name, **params)
    if name == "kepler":
        # Round-off in DOP853 grows with the number of orbits; wide orbits keep the number of
        # periods in 100 time units near 10 so the comparison measures the closed form.
        system = get_system(name, radius_min=1.0, radius_max=1.5)
    q0, p0 = _states(system, 3, seed=7)
    p0 = p0 * p_scale
    t = np.linspace(0.0, 100.0, 401)
    q_ex, p_ex = system.exact_solution(q0, p0, t)
    if name == "pendulum" and p_scale > 1:
        assert np.all(np.abs(q_ex[:, -1, 0]) > 10), "expected rotating pendulums"
    q_num, p_num = integrate(system, q0, p0, t, rtol=1e-13, atol=1e-13, per_component=True)
    err = _rel_err(np.concatenate((q_num, p_num), -1), np.concatenate((q_ex, p_ex), -1))
    assert err.max() < 1e-9, err


def _conserved(system: NBody, q: np.ndarray, p: np.ndarray):
    energy = system.hamiltonian(torch.from_numpy(q), torch.from_numpy(p)).numpy()
    return energy, total_momentum(system, p), angular_momentum(system, q, p)


@pytest.mark.parametrize("system", [NBody(n=4, dim=2), NBody(n=3, dim=3), ThreeBody(),
                                    NBody(n=5, dim=3, masses=[1.0, 0.1, 0.2, 0.1, 0.05])],
                         ids=repr)
def test_nbody_conserves_energy_and_momenta(system):
    q0, p0 = _states(system, 4, seed=3)
    t = np.linspace(0.0, 10.0, 101)  # generate's default horizon: 100 steps of 0.1
    q, p, how = reference_solution(system, q0, p0, t)
    assert how.startswith("scipy DOP853")
    energy, mom, ang = _conserved(system, q, p)
    # Momenta are ~0 in the centre-of-mass frame: measure against the size of the terms.
    mom_scale = np.abs(p).sum(-1).max()
    ang_scale = np.abs(q).max() * np.abs(p).sum(-1).max()
    assert np.max(np.abs(energy - energy[:, :1]) / np.abs(energy[:, :1])) < 1e-10
    assert np.max(np.abs(mom - mom[:, :1])) / mom_scale < 1e-10
    assert np.max(np.abs(ang - ang[:, :1])) / ang_scale < 1e-10


def test_two_body_run_matches_kepler_closed_form():
    nbody = NBody(n=2, dim=2, masses=[1.0, 0.5])
    kepler = Kepler(m1=1.0, m2=0.5)
    q0, p0 = _states(kepler, 4, seed=11)
    t = np.linspace(0.0, 20.0, 201)
    q_num, p_num, _ = reference_solution(nbody, q0, p0, t)
    q_ex, p_ex, how = reference_solution(kepler, q0, p0, t)
    assert how.startswith("closed form")
    err = _rel_err(np.concatenate((q_num, p_num), -1), np.concatenate((q_ex, p_ex), -1))
    assert err.max() < 1e-9, err


def test_three_body_matches_rebound_ias15():
    rebound = pytest.importorskip("rebound")
    system = ThreeBody()
    q0, p0 = _states(system, 1, seed=5)
    q_num, _, _ = reference_solution(system, q0, p0, np.array([0.0, 10.0]))
    x0 = q0[0].reshape(3, 2)
    v0 = (p0[0] / np.repeat(system.masses, 2)).reshape(3, 2)
    sim = rebound.Simulation()
    sim.G = system.G
    sim.integrator = "ias15"
    for m, x, v in zip(system.masses, x0, v0, strict=True):
        sim.add(m=m, x=x[0], y=x[1], vx=v[0], vy=v[1])
    sim.integrate(10.0, exact_finish_time=1)
    ref = np.array([[pt.x, pt.y] for pt in sim.particles]).reshape(-1)
    # No close encounter on the way, so both integrators are near machine precision.
    dist = np.linalg.norm(q_num[0, :, :2] - q_num[0, :, 2:4], axis=-1)
    assert dist.min() > 0.1
    assert np.abs(q_num[0, -1] - ref).max() / np.abs(ref).max() < 1e-8


def test_user_system_from_module(tmp_path, monkeypatch):
    (tmp_path / "my_quartic.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass

        from simulators import System

        @dataclass(frozen=True)
        class Quartic(System):
            a: float = 1.0
            separable = True
            dof = 1

            def hamiltonian(self, q, p):
                return (p**2 / 2 + self.a * q**4 / 4).sum(-1)

            def sample_state(self, rng):
                return rng.uniform(-1, 1, 1), rng.uniform(-1, 1, 1)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    system = get_system("my_quartic:Quartic", a=2.0)
    assert system.name == "my_quartic:Quartic" and system.params == {"a": 2.0}
    q = torch.tensor([[0.5], [-1.0]])
    p = torch.tensor([[0.3], [0.1]])
    torch.testing.assert_close(system.dH_dq(q, p), 2.0 * q**3)  # autograd default
    torch.testing.assert_close(system.dH_dp(q, p), p)
    with pytest.raises(HamgradError, match=r"subclass of simulators\.System"):
        get_system("my_quartic:np")
    with pytest.raises(ConfigError, match=r"unknown parameter 'b' for system "
                                          r"'my_quartic:Quartic'; expected one of: a"):
        get_system("my_quartic:Quartic", b=1.0)


class _OldStyle(System):
    """The contract before 0.2: a plain class that stores its parameters in ``_params``."""

    separable = True

    def __init__(self, k: float = 1.0) -> None:
        self.k, self.dof = float(k), 1
        self._params = {"k": self.k}

    def hamiltonian(self, q, p):
        return (p**2 / 2 + self.k * q**2 / 2).sum(-1)

    def sample_state(self, rng):
        return rng.uniform(-1, 1, 1), rng.uniform(-1, 1, 1)


def test_old_style_params_still_work_with_a_deprecation_warning():
    system = _OldStyle(k=2.0)
    with pytest.warns(DeprecationWarning, match=r"_OldStyle is not a dataclass.*"
                                                r"dataclass\(frozen=True\)"):
        params = system.params
    assert params == {"k": 2.0}
    assert type(system)(**params).k == 2.0
    assert repr(system) == "_OldStyle(k=2.0)"


def test_system_without_hamiltonian_or_sampler_is_abstract():
    @dataclasses.dataclass(frozen=True)
    class NoSampler(System):
        dof = 1

        def hamiltonian(self, q, p):
            return (q**2 + p**2).sum(-1)

    with pytest.raises(TypeError, match="abstract"):
        NoSampler()
