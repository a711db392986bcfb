"""The public API, pinned: a change to any ``__all__`` below must be deliberate.

Removing or renaming a public name breaks users; such a change updates this file in the same
commit and keeps a deprecated alias for one release (tested at the bottom).
"""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "hamgrad": [
        "INTEGRATORS",
        "MODELS",
        "NETS",
        "Dataset",
        "GradNetC",
        "GradNetM",
        "HamgradError",
        "HamiltonianField",
        "Integrator",
        "MGradNetC",
        "MGradNetM",
        "Split",
        "Trajectory",
        "VectorField",
        "__version__",
        "get_integrator",
        "get_model",
        "get_net",
        "load_dataset",
        "potential",
        "rollout",
        "write_dataset",
    ],
    "hamgrad.integrators": [
        "ALIASES",
        "INTEGRATORS",
        "ButcherTableau",
        "Integrator",
        "SplittingIntegrator",
        "SplittingTableau",
        "Stepper",
        "RolloutFailure",
        "Trajectory",
        "adjoint_methods",
        "applicable_methods",
        "check_applicable",
        "derivative_fn",
        "get_integrator",
        "odeint",
        "register_integrator",
        "rollout",
    ],
    "hamgrad.nets": [
        "ACTIVATIONS",
        "NETS",
        "FieldNet",
        "GradNetC",
        "GradNetM",
        "ICNNGradient",
        "MGradNetC",
        "MGradNetM",
        "MLPField",
        "ScalarGradient",
        "count_parameters",
        "get_activation",
        "get_net",
        "hidden_for_budget",
        "potential",
    ],
    "hamgrad.models": [
        "FEATURES",
        "HNN",
        "MODELS",
        "GradNetHamiltonian",
        "HamiltonianModel",
        "LearnedModel",
        "NetHamiltonian",
        "NeuralODE",
        "Normalizer",
        "PairwiseNormalizer",
        "SeparableGradNetHamiltonian",
        "features_for_system",
        "get_model",
        "hparams_for_data",
        "model_from_config",
        "phase_statistics",
        "register_model",
    ],
    "hamgrad.training": [
        "OPTIMIZERS",
        "SCHEDULES",
        "DerivativeLoss",
        "RolloutLoss",
        "TrainConfig",
        "TrainResult",
        "TrainingError",
        "build_loss",
        "parse_loss",
        "train",
    ],
    "hamgrad.data": [
        "CHUNK_BYTES",
        "COMPRESSIONS",
        "FORMAT",
        "FORMAT_VERSION",
        "SPLIT_NAMES",
        "Dataset",
        "DatasetReader",
        "DatasetWriter",
        "Split",
        "SplitReader",
        "TrajectorySource",
        "check_compression",
        "concatenate_datasets",
        "load_dataset",
        "open_dataset",
        "read_blocks",
        "write_dataset",
    ],
    "hamgrad.checkpoint": [
        "CHECKPOINT_FORMAT",
        "find_checkpoint",
        "load_checkpoint",
        "load_model",
        "model_checkpoint",
        "save_checkpoint",
    ],
    "hamgrad.run": [
        "RUN_FORMAT",
        "RunLock",
        "RunPaths",
        "check_run_name",
        "claim_run_dir",
        "dataset_record",
        "evaluate_run",
        "is_run_dir",
        "load_curves",
        "predict_split",
        "read_run_config",
        "run_dataset_path",
        "save_evaluation",
    ],
    "hamgrad.evaluation": [
        "Evaluation",
        "TrueSystem",
        "Truth",
        "check_dof",
        "evaluate",
        "horizons",
        "state_metrics",
    ],
    "hamgrad.report": ["format_table"],
    "hamgrad.plotting": ["PLOTS", "write_plots"],
    "hamgrad.db": ["decibels"],
    "hamgrad.cli": ["data_cmds", "main", "model_cmds"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_is_pinned_and_every_name_resolves(module):
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_lazy_top_level_names_match_their_modules():
    import hamgrad

    for name, module in hamgrad._EXPORTS.items():
        assert getattr(hamgrad, name) is getattr(importlib.import_module(module), name)
    assert set(hamgrad._EXPORTS) | {"__version__"} == set(hamgrad.__all__)


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    import hamgrad

    assert hamgrad.__version__ == version("hamgrad")


# (module, deprecated name, its replacement in the form `module:name`)
DEPRECATED = [
    ("hamgrad.training", "load_model", "hamgrad.checkpoint:load_model"),
    ("hamgrad.training", "RunPaths", "hamgrad.run:RunPaths"),
    ("hamgrad.training", "read_run_config", "hamgrad.run:read_run_config"),
    ("hamgrad.integrators.tableau", "SplittingTable", "hamgrad.integrators:SplittingTableau"),
    ("hamgrad.integrators.base", "vector_field", "hamgrad.integrators:derivative_fn"),
]


@pytest.mark.parametrize(("module", "name", "replacement"), DEPRECATED)
def test_deprecated_aliases_warn_and_point_to_the_new_name(module, name, replacement):
    new_module, new_name = replacement.split(":")
    with pytest.warns(DeprecationWarning):
        old = getattr(importlib.import_module(module), name)
    assert old is getattr(importlib.import_module(new_module), new_name)


def test_deprecated_constructors_warn():
    from hamgrad.integrators.coefficients import SPLITTING_TABLEAUS
    from hamgrad.integrators.splitting import SplittingIntegrator
    from hamgrad.integrators.tao import TaoIntegrator

    with pytest.warns(DeprecationWarning, match="from_tableau"):
        old = SplittingIntegrator.from_table(SPLITTING_TABLEAUS["leapfrog"])
    assert old == SplittingIntegrator.from_tableau(SPLITTING_TABLEAUS["leapfrog"])
    with pytest.warns(DeprecationWarning, match="from_order"):
        assert TaoIntegrator.of_order(4) == TaoIntegrator.from_order(4)
