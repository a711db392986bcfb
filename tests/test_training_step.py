"""The training step: fused optimizers, the step itself, and its compiled form."""

from __future__ import annotations

import json

import pytest
import torch

from hamgrad.models import get_model
from hamgrad.training import DerivativeLoss
from hamgrad.training.config import OPTIMIZERS, fused_optimizer
from hamgrad.training.step import Objective, TrainStep


def _batch(n: int = 32, dof: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(n, dof, generator=g) for k in ("q", "p", "dq_dt", "dp_dt")}


def _model(seed: int = 0):
    return get_model("gradnet", 2, generator=torch.Generator().manual_seed(seed), hidden=8, depth=2)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fused_optimizers_follow_the_plain_update(name):
    plain_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    models = [_model(), _model()]
    opts = [
        OPTIMIZERS[name](models[0].parameters(), lr=1e-2, weight_decay=1e-3),
        plain_cls(models[1].parameters(), lr=1e-2, weight_decay=1e-3),
    ]
    assert opts[0].param_groups[0]["fused"] is True
    for model, opt in zip(models, opts, strict=True):
        step = TrainStep(Objective(model, DerivativeLoss()), opt, grad_clip=1.0)
        for seed in range(5):
            step(_batch(seed=seed))
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_fused_optimizer_falls_back_where_torch_has_no_kernel():
    class NoFused(torch.optim.Adam):
        def __init__(self, params, fused=None, **kwargs):
            if fused:
                raise RuntimeError("`fused=True` is not supported here")
            super().__init__(params, **kwargs)

    opt = fused_optimizer(NoFused)(_model().parameters(), lr=1e-3)
    assert not opt.param_groups[0].get("fused")


def test_step_returns_the_loss_before_the_update_without_reading_it():
    model, batch = _model(), _batch()
    expected = DerivativeLoss()(model, batch).detach()
    opt = OPTIMIZERS["adam"](model.parameters(), lr=1e-2)
    loss = TrainStep(Objective(model, DerivativeLoss()), opt)(batch)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, expected)
    with torch.no_grad():
        assert float(DerivativeLoss()(model, batch)) < float(loss)  # one step went downhill


@pytest.mark.slow
# torch.compile trips over deprecations inside torch itself (its jit helpers, Function use).
@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch")
def test_compiled_step_matches_the_eager_step():
    models = [_model(), _model()]
    steps = [
        TrainStep(
            Objective(m, DerivativeLoss()), OPTIMIZERS["adam"](m.parameters(), lr=1e-2), compile=c
        )
        for m, c in zip(models, (False, True), strict=True)
    ]
    for size in (32, 32, 7):  # a second batch size recompiles once
        losses = [step(_batch(n=size, seed=size)) for step in steps]
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-9, atol=1e-12)
    assert steps[0].compile_seconds is None
    assert steps[1].compile_seconds is not None and steps[1].compile_seconds > 0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch")
def test_train_with_compile_matches_eager_and_logs_the_compile_time(tmp_path):
    # The loop's compiled path: the objective compiled once per batch size (the epoch's last,
    # short batch recompiles), its compile time in the first metrics row only.
    from test_training_helpers import make_dataset

    from hamgrad.training import TrainConfig, train

    data = make_dataset(tmp_path / "pend.h5", n_train=10, n_val=2)  # 300 samples: 2 batch sizes
    runs = {}
    for compile_ in (False, True):
        config = TrainConfig.from_mapping(
            {
                "data": str(data),
                "model": "gradnet",
                "model_params": {"hidden": 8, "depth": 2},
                "epochs": 2,
                "batch_size": 128,
                "dtype": "float64",
                "device": "cpu",
                "runs_dir": str(tmp_path),
                "name": f"compiled-{compile_}",
                "compile": compile_,
            }
        )
        runs[compile_] = train(config)
    rows = [
        [json.loads(line) for line in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
        for r in (runs[False], runs[True])
    ]
    assert "compile_s" not in rows[0][0]
    assert rows[1][0]["compile_s"] > 0 and "compile_s" not in rows[1][1]
    for eager, compiled in zip(rows[0], rows[1], strict=True):
        assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-9)
    # Resumed, the process compiles again: its first epoch logs that time too.
    config_path = runs[True].run_dir / "config.json"
    config_path.write_text(config_path.read_text().replace('"epochs": 2', '"epochs": 3'))
    torch._dynamo.reset()
    train(resume=runs[True].run_dir)
    resumed = (runs[True].run_dir / "metrics.jsonl").read_text().splitlines()
    assert json.loads(resumed[2])["compile_s"] > 0


def test_a_checkpoint_from_before_fused_adam_resumes_with_the_fused_kernel(tmp_path):
    # Checkpoints written before the optimizer was fused carry ``fused: None`` in their param
    # groups; torch's load_state_dict would bring that back and the run would lose the kernel.
    from test_training_helpers import make_dataset

    from hamgrad.training import TrainConfig, train

    data = make_dataset(tmp_path / "pend.h5", n_train=4, n_val=2)
    config = TrainConfig.from_mapping(
        {
            "data": str(data),
            "model": "gradnet",
            "model_params": {"hidden": 8, "depth": 2},
            "epochs": 1,
            "batch_size": 64,
            "device": "cpu",
            "runs_dir": str(tmp_path),
            "name": "old",
        }
    )
    run_dir = train(config).run_dir
    last = run_dir / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["optimizer_state"]["param_groups"][0]["fused"] is True
    for group in ckpt["optimizer_state"]["param_groups"]:
        group["fused"] = None  # as an older hamgrad wrote it
    torch.save(ckpt, last)
    config_path = run_dir / "config.json"
    config_path.write_text(config_path.read_text().replace('"epochs": 1', '"epochs": 2'))
    train(resume=run_dir)
    resumed = torch.load(last, weights_only=True)
    assert resumed["epoch"] == 2
    assert all(g["fused"] is True for g in resumed["optimizer_state"]["param_groups"])
