"""CUDA: training, streamed samples, checkpoints and rollouts on a GPU agree with the CPU.

Every test here is marked ``cuda`` and skipped without a CUDA device; ``scripts/gpu_check.sh``
runs them (``pytest -m cuda``) on a machine with one.
"""

from __future__ import annotations

import pytest
import torch
from test_training_helpers import make_dataset

from hamgrad.checkpoint import load_checkpoint, load_model
from hamgrad.data import open_dataset
from hamgrad.integrators import rollout
from hamgrad.models import MODELS, get_model
from hamgrad.training import TrainConfig, train
from hamgrad.training.samples import SampleSet

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("cuda") / "p.h5", n_train=8, n_val=2, n_test=2)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("loss", ["derivative", "rollout:2"])
def test_training_on_cuda_reaches_the_cpu_weights(data, tmp_path, loss):
    """float64: the GPU's different summation order stays at rounding level (1e-8 after
    24 Adam steps); the checkpoint loads on the CPU."""
    base = {
        "data": str(data),
        "runs_dir": str(tmp_path),
        "model_params": {"hidden": 16, "depth": 2},
        "epochs": 3,
        "batch_size": 64,
        "dtype": "float64",
        "loss": loss,
    }
    cpu = train(TrainConfig.from_mapping({**base, "device": "cpu", "name": "cpu"}))
    gpu = train(TrainConfig.from_mapping({**base, "device": "cuda", "name": "gpu"}))
    a = load_checkpoint(cpu.run_dir / "last.pt")["model_state"]
    b = load_checkpoint(gpu.run_dir / "last.pt")["model_state"]
    for key in a:
        assert _relative(a[key], b[key]) < 1e-8, key
    model, _ = load_model(gpu.run_dir, device="cpu")
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("window", [None, 3])
def test_streamed_batches_on_cuda_equal_the_cpu_batches(data, window):
    with open_dataset(data) as ds:
        sets = [
            SampleSet(ds["train"], ("q", "p"), window, torch.float64, torch.device(d), 1024)
            for d in ("cpu", "cuda")
        ]
        assert not sets[0].resident
        batches = [
            list(s.batches(50, torch.Generator().manual_seed(3), rank=1, world_size=2))
            for s in sets
        ]
    for (a, n), (b, m) in zip(*batches, strict=True):
        assert n == m and b["q"].device.type == "cuda"
        assert torch.equal(a["q"], b["q"].cpu()) and torch.equal(a["p"], b["p"].cpu())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_rollouts_on_cuda_match_the_cpu(name):
    model = get_model(name, 2, generator=torch.Generator().manual_seed(0), hidden=16, depth=2)
    model = model.double()
    q0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    p0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    method = model.integrator().name
    with torch.no_grad():
        cpu = rollout(model, q0, p0, 0.05, 50, method=method)
        model.cuda()
        gpu = rollout(model, q0.cuda(), p0.cuda(), 0.05, 50, method=method)
    assert gpu.q.device.type == "cuda"
    assert _relative(cpu.q, gpu.q.cpu()) < 1e-10 and _relative(cpu.p, gpu.p.cpu()) < 1e-10
