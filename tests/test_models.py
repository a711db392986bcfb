"""Learned models: registry contract, Hamiltonian structure, normalisation, errors.

Every test that concerns "all models" is parametrised over `MODELS` (or its Hamiltonian /
separable entries), so a new model gets them for free.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from hamgrad.data import Split
from hamgrad.errors import CheckpointError, ConfigError
from hamgrad.models import MODELS, get_model, model_from_config, phase_statistics

DOF = 2
SMALL = {"hidden": 8, "depth": 2}
HAMILTONIAN = [n for n, c in MODELS.items() if c.is_hamiltonian]
SEPARABLE = [n for n in HAMILTONIAN if MODELS[n].separable]
NON_SEPARABLE = [n for n in HAMILTONIAN if not MODELS[n].separable]


def _model(name: str, seed: int = 0, stats: bool = True):
    """A small model with non-trivial normalisation (so the scaling is exercised)."""
    model = get_model(name, DOF, generator=torch.Generator().manual_seed(seed), **SMALL)
    if stats:
        g = torch.Generator().manual_seed(seed + 100)
        model.normalizer.set_statistics(
            torch.randn(2 * DOF, generator=g), 0.5 + torch.rand(2 * DOF, generator=g), 1.7
        )
    return model


def _states(*shape: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, DOF, generator=g), torch.randn(*shape, DOF, generator=g)


def _jacobian_of_field(model, q, p):
    """Jacobian ``[2*dof, 2*dof]`` of ``(dq/dt, dp/dt)`` at one state."""

    def field(x):
        dq, dp = model.time_derivative(x[: model.dof], x[model.dof :])
        return torch.cat([dq, dp])

    return torch.autograd.functional.jacobian(field, torch.cat([q, p]))


def hamiltonian_form_defect(model, q, p) -> float:
    """``max |S - Sᵀ|`` with ``S = J⁻¹ · ∂f/∂x``: zero iff the field is ``J · (symmetric)``."""
    eye = torch.eye(model.dof)
    zero = torch.zeros(model.dof, model.dof)
    J = torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)
    S = -J @ _jacobian_of_field(model, q, p)  # J⁻¹ = -J
    return float((S - S.T).abs().max())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shapes_dtypes_and_batch_axes(name):
    model = _model(name)
    for dtype in (torch.float32, torch.float64):
        model.to(dtype)
        q, p = _states(3, 4)
        dq, dp = model.time_derivative(q.to(dtype), p.to(dtype))
        assert dq.shape == dp.shape == (3, 4, DOF)
        assert dq.dtype == dp.dtype == dtype
        # Batching is element-wise: one sample alone gives the same answer.
        dq1, _ = model.time_derivative(q[1, 2].to(dtype), p[1, 2].to(dtype))
        torch.testing.assert_close(dq1, dq[1, 2])
        if model.is_hamiltonian:
            assert model.hamiltonian(q.to(dtype), p.to(dtype)).shape == (3, 4)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_config_round_trip_rebuilds_identical_field(name):
    model = _model(name, seed=3)
    rebuilt = model_from_config(model.config())
    rebuilt.load_state_dict(model.state_dict())
    q, p = _states(5)
    for a, b in zip(model.time_derivative(q, p), rebuilt.time_derivative(q, p), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # The config is plain JSON.
    import json

    assert json.loads(json.dumps(model.config())) == model.config()


@pytest.mark.parametrize("name", HAMILTONIAN)
def test_energy_gradient_equals_field(name):
    """∇ of the reported energy is the field's ∇H, through normalisation and the line integral."""
    model = _model(name, seed=5)
    q, p = _states(7, seed=2)
    q.requires_grad_(True)
    p.requires_grad_(True)
    gq, gp = torch.autograd.grad(model.hamiltonian(q, p).sum(), (q, p))
    dHq, dHp = model.dH_dq(q, p), model.dH_dp(q, p)
    torch.testing.assert_close(gq, dHq, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(gp, dHp, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", HAMILTONIAN)
def test_vector_field_has_exact_hamiltonian_form(name):
    model = _model(name, seed=7)
    q, p = _states(seed=4)
    assert hamiltonian_form_defect(model, q, p) < 1e-10


def test_hamiltonian_form_check_catches_a_non_hamiltonian_field():
    """The same check must fail on the unconstrained NeuralODE (else it proves nothing)."""
    model = _model("neural-ode", seed=7)
    q, p = _states(seed=4)
    assert hamiltonian_form_defect(model, q, p) > 1e-3


def _cross_dependence(model, q, p) -> float:
    """How much dH_dq moves with p plus how much dH_dp moves with q (zero if separable)."""
    q2, p2 = _states(seed=9)
    with torch.no_grad():
        return float(
            (model.dH_dq(q, p) - model.dH_dq(q, p2)).abs().max()
            + (model.dH_dp(q, p) - model.dH_dp(q2, p)).abs().max()
        )


@pytest.mark.parametrize("name", SEPARABLE)
def test_separable_halves_read_only_their_own_variable(name):
    model = _model(name)
    q, p = _states(seed=5)
    assert _cross_dependence(model, q, p) == 0.0


@pytest.mark.parametrize("name", NON_SEPARABLE)
def test_separability_check_catches_coupled_models(name):
    model = _model(name)
    q, p = _states(seed=5)
    assert _cross_dependence(model, q, p) > 1e-6


@pytest.mark.parametrize("name", SEPARABLE)
def test_separable_kinetic_energy_is_convex(name):
    """∂²T/∂p² (Jacobian of dH_dp in p) is symmetric PSD at random momenta."""
    model = _model(name)
    for seed in range(5):
        q, p = _states(seed=seed)
        hess = torch.autograd.functional.jacobian(lambda x, q=q: model.dH_dp(q, x), p)
        torch.testing.assert_close(hess, hess.T, rtol=0, atol=1e-12)
        assert torch.linalg.eigvalsh(hess).min() >= -1e-12


@pytest.mark.parametrize("name", HAMILTONIAN)
def test_normalisation_is_the_chain_rule(name):
    """With stats (mu, sigma, c): ∇H(x) = (c/sigma) ∇H₀(z) and H(x) = c H₀(z), z = (x-mu)/sigma.

    H₀ is the same network with the identity normalisation: a per-coordinate affine change of
    variables rescales ∇H consistently, so the field stays an exact gradient.
    """
    scaled = _model(name, seed=11, stats=True)
    plain = model_from_config(scaled.config())
    plain.load_state_dict(scaled.state_dict())
    plain.normalizer.set_statistics(torch.zeros(2 * DOF), torch.ones(2 * DOF), 1.0)
    n = scaled.normalizer
    q, p = _states(6, seed=12)
    z = (torch.cat([q, p], -1) - n.mean) / n.scale
    zq, zp = z[..., :DOF], z[..., DOF:]
    factor = n.energy_scale / n.scale
    gq0, gp0 = plain.dH_dq(zq, zp), plain.dH_dp(zq, zp)
    torch.testing.assert_close(scaled.dH_dq(q, p), factor[:DOF] * gq0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scaled.dH_dp(q, p), factor[DOF:] * gp0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        scaled.hamiltonian(q, p), n.energy_scale * plain.hamiltonian(zq, zp), rtol=1e-10, atol=1e-10
    )


def test_phase_statistics_of_a_harmonic_oscillator():
    """Spring H = (q² + p²)/2 with amplitude A: sigma = A/√2 and energy scale c = A²/2 = H."""
    t = np.linspace(0, 2 * np.pi, 2001)[:-1]  # one full period, uniform phase
    amplitude = 3.0
    q = amplitude * np.cos(t)[None, :, None]
    p = -amplitude * np.sin(t)[None, :, None]
    mean, scale, c = phase_statistics(q, p, float(t[1] - t[0]), p.copy(), -q.copy())
    np.testing.assert_allclose(mean, 0.0, atol=1e-12)
    np.testing.assert_allclose(scale, amplitude / np.sqrt(2), rtol=1e-9)
    assert c == pytest.approx(amplitude**2 / 2, rel=1e-9)
    # Without stored derivatives, finite differences give nearly the same scale.
    _, _, c_fd = phase_statistics(q, p, float(t[1] - t[0]))
    assert c_fd == pytest.approx(c, rel=1e-3)


def test_constant_coordinates_are_not_divided_by_zero():
    q = np.zeros((2, 5, 1))
    p = np.linspace(0, 1, 10).reshape(2, 5, 1)
    _, scale, c = phase_statistics(q, p, 0.1)
    assert scale[0] == 1.0 and np.isfinite(c) and c > 0


def test_normalize_false_keeps_identity():
    model = get_model("gradnet", 1, normalize=False, **SMALL)
    q = np.random.default_rng(0).normal(5.0, 3.0, (2, 10, 1))
    split = Split(t=0.1 * np.arange(10), q=q, p=q)
    model.fit_normalization(split, 0.1)
    torch.testing.assert_close(model.normalizer.scale, torch.ones(2))
    fitted = get_model("gradnet", 1, **SMALL)
    fitted.fit_normalization(split, 0.1)
    assert float(fitted.normalizer.scale[0]) == pytest.approx(float(q.std()), rel=1e-9)


def test_gradnet_field_needs_no_double_backprop_but_hnn_does():
    """The GradNet field is a plain forward pass; HNN's contains backward-of-backward nodes."""

    def graph_names(model):
        q, p = _states(4)
        dq, _ = model.time_derivative(q, p)
        seen, stack, names = set(), [dq.grad_fn], set()
        while stack:
            fn = stack.pop()
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            names.add(type(fn).__name__)
            stack.extend(f for f, _ in fn.next_functions)
        return names

    def has_double(names):
        return any(n.count("Backward") >= 2 for n in names)

    assert not has_double(graph_names(_model("gradnet")))
    assert not has_double(graph_names(_model("separable-gradnet")))
    assert has_double(graph_names(_model("hnn")))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "nope"}, "unknown model 'nope'"),
        ({"name": "gradnet", "widht": 3}, "unknown hyperparameter 'widht'"),
        ({"name": "gradnet", "net": "mlp"}, "unknown net 'mlp'"),
        ({"name": "separable-gradnet", "kinetic_net": "gradnet-c"}, "unknown net 'gradnet-c'"),
        ({"name": "hnn", "hidden": 0}, "hidden must be an integer >= 1"),
    ],
)
def test_bad_model_arguments(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ConfigError, match=match):
        get_model(name, DOF, **kwargs)


def test_neural_ode_has_no_energy_nor_gradient():
    model = _model("neural-ode")
    assert not hasattr(model, "dH_dq")
    with pytest.raises(ConfigError, match="not Hamiltonian"):
        model.hamiltonian(*_states())


@pytest.mark.parametrize("name", HAMILTONIAN)
def test_deprecated_energy_alias_warns_and_agrees(name):
    model = _model(name)
    q, p = _states(3)
    with pytest.warns(DeprecationWarning, match="use hamiltonian"):
        old = model.energy(q, p)
    torch.testing.assert_close(old, model.hamiltonian(q, p))


def test_hnn_checkpoint_of_version_0_1_still_loads():
    """0.1 recorded HNN's fixed net as hyperparameter ``net``; its configs must still rebuild."""
    model = _model("hnn")
    old = {**model.config(), "hparams": {**model.config()["hparams"], "net": "scalar-grad"}}
    rebuilt = model_from_config(old)
    rebuilt.load_state_dict(model.state_dict())
    q, p = _states(3)
    torch.testing.assert_close(rebuilt.dH_dq(q, p), model.dH_dq(q, p))
    with pytest.raises(ConfigError, match="unknown hyperparameter 'net'"):
        get_model("hnn", DOF, net="scalar-grad")  # only old checkpoints, not new calls


@pytest.mark.parametrize("name", sorted(MODELS))
def test_integrator_is_resolved_and_checked_once(name):
    model = _model(name)
    integrator = model.integrator()
    assert integrator.name == MODELS[name].default_integrator
    assert model.integrator(training=True).name == MODELS[name].train_integrator
    assert model.integrator(integrator) is integrator


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"name": "gradnet", "dof": 1}, "lacks field 'hparams'"),
        ({"name": "mystery", "dof": 1, "hparams": {}}, "unknown model 'mystery'"),
    ],
)
def test_model_from_bad_config(config, match):
    with pytest.raises(CheckpointError, match=match):
        model_from_config(config)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_initial_model_does_not_depend_on_the_default_dtype(name):
    """The same seed gives the same weights in a float32 and a float64 session (0.1 drew
    them in the default dtype, so the two sessions started from different weights)."""
    built = {}
    for dtype in (torch.float32, torch.float64):
        torch.set_default_dtype(dtype)
        try:
            model = get_model(name, DOF, generator=torch.Generator().manual_seed(4), **SMALL)
        finally:
            torch.set_default_dtype(torch.float64)
        built[dtype] = model.double()
    low, high = built[torch.float32].state_dict(), built[torch.float64].state_dict()
    for key, value in high.items():
        torch.testing.assert_close(low[key], value, rtol=1e-7, atol=1e-7, msg=key)


@pytest.mark.parametrize(
    ("key", "value", "want"),
    [
        ("normalize", "maybe", "true or false"),
        ("normalize", 1, "true or false"),
        ("hidden", 8.0, "an integer"),
        ("hidden", True, "an integer"),
        ("activation", 3, "a name"),
        ("net", ["gradnet-c"], "a name"),
    ],
)
def test_hyperparameters_are_typed_strictly(key, value, want):
    with pytest.raises(ConfigError, match=f"{key} must be {re.escape(want)}"):
        get_model("gradnet", DOF, **{key: value})


def test_modular_gradnet_defaults_to_tanh_mix_and_old_configs_keep_theirs():
    """The default activation became ``tanh-mix`` for every net of the GradNet model; a config
    saved with ``activation=None`` (the modular net's own softmax-mix) rebuilds what it trained."""
    new = get_model("gradnet", DOF, net="gradnet-m", **SMALL)
    assert type(new.net.act).__name__ == "TanhMix"
    old = model_from_config(
        {"name": "gradnet", "dof": DOF, "hparams": {**new.config()["hparams"], "activation": None}}
    )
    assert type(old.net.act).__name__ == "SoftmaxMix"
