"""Systems: the HamiltonianField contract, registry, exact flows, n-body conservation, REBOUND."""

from __future__ import annotations

import dataclasses
import inspect
import json
import textwrap

import numpy as np
import pytest
import rebound
import torch

import simulators
from hamgrad import HamiltonianField
from hamgrad.errors import ConfigError, HamgradError
from simulators import (
    ALIASES,
    REFERENCE_NAME,
    SYSTEMS,
    Kepler,
    NBody,
    System,
    ThreeBody,
    angular_momentum,
    get_system,
    integrate,
    reference_solution,
    reference_trajectories,
    total_momentum,
)
from simulators.rebound_reference import integrate_ias15
from simulators.reference import ReferenceSettings

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
    assert set(SYSTEMS) == {
        "pendulum",
        "spring",
        "spring-chain",
        "double-pendulum",
        "kepler",
        "three-body",
        "nbody",
    }
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
    classes = {
        cls
        for cls in vars(simulators).values()
        if isinstance(cls, type) and issubclass(cls, System)
    }
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
    assert (
        SYSTEMS["spring"].__mro__[1]
        is SYSTEMS["spring-chain"].__mro__[1]
        is simulators.QuadraticSystem
    )


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
    with pytest.raises(
        ConfigError,
        match=r"unknown system 'pendulumm'.*double-pendulum.*"
        r"two-body",
    ):
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
    cases += [
        ("pendulum", {"m": 0.5, "g": 6.0}, 1.0),  # HNN pendulum, librating
        ("pendulum", {}, 4.0),  # momenta x4: rotating
        ("spring-chain", {"ends": "periodic", "n": 4}, 1.0),
    ]
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


def _conserved(system, q: np.ndarray, p: np.ndarray):
    energy = system.hamiltonian(torch.from_numpy(q), torch.from_numpy(p)).numpy()
    return energy, total_momentum(system, p), angular_momentum(system, q, p)


@pytest.mark.parametrize(
    "system",
    [
        NBody(n=4, dim=2),
        NBody(n=3, dim=3),
        ThreeBody(),
        NBody(n=5, dim=3, masses=[1.0, 0.1, 0.2, 0.1, 0.05]),
    ],
    ids=repr,
)
def test_nbody_reference_is_ias15_and_conserves_energy_and_momenta(system):
    q0, p0 = _states(system, 4, seed=3)
    t = np.linspace(0.0, 10.0, 101)  # generate's default horizon: 100 steps of 0.1
    ref = reference_trajectories(system, q0, p0, t)
    assert ref.how == REFERENCE_NAME == f"rebound IAS15 {rebound.__version__}"
    energy, mom, ang = _conserved(system, ref.q, ref.p)
    # Momenta are ~0 in the centre-of-mass frame: measure against the size of the terms.
    mom_scale = np.abs(ref.p).sum(-1).max()
    ang_scale = np.abs(ref.q).max() * np.abs(ref.p).sum(-1).max()
    smooth = np.isnan(ref.encounter_time)
    rel = (np.abs(energy - energy[:, :1]) / np.abs(energy[:, :1])).max(-1)
    assert np.all(rel[smooth] < 1e-13)
    assert rel.max() < 1e-10
    assert np.max(np.abs(mom - mom[:, :1])) / mom_scale < 1e-13
    assert np.max(np.abs(ang - ang[:, :1])) / ang_scale < 1e-13


@pytest.mark.parametrize(
    "system",
    [
        ThreeBody(),
        ThreeBody(masses=[1.0, 2.0, 0.5], G=2.0, softening=0.1),
        NBody(n=3, dim=3, masses=[1.0, 0.1, 0.2], softening=0.05),
    ],
    ids=repr,
)
def test_ias15_agrees_with_dop853_on_smooth_orbits(system):
    """Same masses, G, softening, 2-D/3-D and p = m v mapping in both references."""
    q0, p0 = _states(system, 3, seed=5)
    t = np.linspace(0.0, 3.0, 31)  # before the Lagrange configurations break up
    ias = reference_trajectories(system, q0, p0, t)
    dop = reference_trajectories(system, q0, p0, t, method="dop853")
    assert ias.how.startswith("rebound IAS15") and dop.how.startswith("scipy DOP853")
    assert np.all(np.isnan(ias.encounter_time)) and dop.encounter_time is None
    err = _rel_err(np.concatenate((ias.q, ias.p), -1), np.concatenate((dop.q, dop.p), -1))
    assert err.max() < 1e-10, err


def test_kepler_via_rebound_matches_the_closed_form():
    kepler = Kepler(m1=1.0, m2=0.5)
    q0, p0 = _states(kepler, 4, seed=11)
    t = np.linspace(0.0, 20.0, 201)
    exact = reference_trajectories(kepler, q0, p0, t)
    ias = reference_trajectories(kepler, q0, p0, t, use_exact=False)
    assert exact.how.startswith("closed form") and ias.how == REFERENCE_NAME
    err = _rel_err(np.concatenate((ias.q, ias.p), -1), np.concatenate((exact.q, exact.p), -1))
    assert err.max() < 1e-12, err
    # The same orbits as a general two-body NBody take the IAS15 path too.
    q_nb, p_nb, how = reference_solution(NBody(n=2, dim=2, masses=[1.0, 0.5]), q0, p0, t)
    assert how == REFERENCE_NAME
    np.testing.assert_array_equal(q_nb, ias.q)
    np.testing.assert_array_equal(p_nb, ias.p)


def test_unbound_kepler_orbit_falls_back_to_ias15_block_by_block():
    kepler = Kepler()
    q0, p0 = _states(kepler, 4, seed=2)
    p0[2] *= 1.6  # above escape speed (sqrt 2 times circular): a hyperbola
    t = np.linspace(0.0, 5.0, 51)
    ref = reference_trajectories(kepler, q0, p0, t, settings=ReferenceSettings(batch_size=2))
    assert ref.how == f"{Kepler.exact_method}; {REFERENCE_NAME}"
    assert np.isnan(ref.encounter_time).all()
    exact = reference_trajectories(kepler, q0[:2], p0[:2], t)
    np.testing.assert_array_equal(ref.q[:2], exact.q)  # the bound block stays closed form
    energy = kepler.hamiltonian(torch.from_numpy(ref.q[2:]), torch.from_numpy(ref.p[2:]))
    assert float((energy[:, -1] - energy[:, 0]).abs().max() / energy[:, 0].abs().max()) < 1e-13
    assert float(energy[0, 0]) > 0  # unbound indeed


def _pythagorean() -> tuple[NBody, np.ndarray, np.ndarray]:
    """Burrau's problem: masses 3, 4, 5 at rest at the corners of a 3-4-5 triangle, G = 1."""
    system = NBody(n=3, dim=2, masses=[3.0, 4.0, 5.0])
    q0 = np.array([[1.0, 3.0, -2.0, -1.0, 1.0, -1.0]])
    return system, q0, np.zeros_like(q0)


def test_pythagorean_three_body_problem_to_t70():
    """Szebehely & Peters (AJ 72, 876, 1967): after many close encounters masses 4 and 5 leave
    as a bound binary and mass 3 escapes the other way."""
    system, q0, p0 = _pythagorean()
    t = np.linspace(0.0, 70.0, 701)
    ref = reference_trajectories(system, q0, p0, t)
    energy, _, _ = _conserved(system, ref.q, ref.p)
    assert np.max(np.abs(energy[0] - energy[0, 0]) / abs(energy[0, 0])) < 1e-10
    assert ref.encounter_time[0] < 10  # reported, not smoothed over
    x = ref.q[0, -1].reshape(3, 2)
    v = (ref.p[0, -1] / np.repeat(system.masses, 2)).reshape(3, 2)
    m3, m4, m5 = system.masses
    # Masses 4 and 5: negative two-body energy in their own centre-of-mass frame.
    r45 = np.linalg.norm(x[1] - x[2])
    e45 = 0.5 * m4 * m5 / (m4 + m5) * np.sum((v[1] - v[2]) ** 2) - m4 * m5 / r45
    assert e45 < 0
    # Mass 3 against the binary's centre of mass: positive energy, moving away, far off.
    xb = (m4 * x[1] + m5 * x[2]) / (m4 + m5)
    vb = (m4 * v[1] + m5 * v[2]) / (m4 + m5)
    mu = m3 * (m4 + m5) / (m3 + m4 + m5)
    rel_x, rel_v = x[0] - xb, v[0] - vb
    e3 = 0.5 * mu * rel_v @ rel_v - m3 * (m4 + m5) / np.linalg.norm(rel_x)
    assert e3 > 0 and rel_x @ rel_v > 0
    assert np.linalg.norm(rel_x) > 10 * r45


def test_ias15_samples_exact_times_and_ignores_worker_count():
    system = ThreeBody()
    q0, p0 = _states(system, 6, seed=4)
    fine = np.linspace(0.0, 4.0, 41)
    one = integrate_ias15(system, q0, p0, fine, workers=1)
    two = integrate_ias15(system, q0, p0, fine, workers=2)
    for a, b in ((one.q, two.q), (one.p, two.p), (one.steps, two.steps)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one.encounter_time, two.encounter_time)
    # A coarse grid lands on t = 2 and 4 with other steps, and agrees to round-off.
    coarse = integrate_ias15(system, q0, p0, np.array([0.0, 2.0, 4.0]))
    np.testing.assert_allclose(coarse.q, one.q[:, ::20], rtol=0, atol=1e-13)
    assert np.all(coarse.steps < one.steps)


def test_user_system_from_module(tmp_path, monkeypatch):
    (tmp_path / "my_quartic.py").write_text(
        textwrap.dedent("""
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
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    system = get_system("my_quartic:Quartic", a=2.0)
    assert system.name == "my_quartic:Quartic" and system.params == {"a": 2.0}
    q = torch.tensor([[0.5], [-1.0]])
    p = torch.tensor([[0.3], [0.1]])
    torch.testing.assert_close(system.dH_dq(q, p), 2.0 * q**3)  # autograd default
    torch.testing.assert_close(system.dH_dp(q, p), p)
    with pytest.raises(HamgradError, match=r"subclass of simulators\.System"):
        get_system("my_quartic:np")
    with pytest.raises(
        ConfigError,
        match=r"unknown parameter 'b' for system "
        r"'my_quartic:Quartic'; expected one of: a",
    ):
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
    with pytest.warns(
        DeprecationWarning,
        match=r"_OldStyle is not a dataclass.*"
        r"dataclass\(frozen=True\)",
    ):
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
