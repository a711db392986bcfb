"""Cost of one derivative-loss training step for every model in `hamgrad.models.MODELS`.

The point measured: a GradNet Hamiltonian's vector field is one forward pass, so a training step
is one forward + one backward; an HNN's field is itself a gradient, so its step differentiates
through a gradient (double backprop). Models are compared at (about) the same parameter count.

Usage::

    python scripts/bench_train_step.py [--dof 1 3] [--batch 256] [--budget 2000] [--repeats 5]
        [--device cpu|cuda]

Prints, per dof, the parameter count and the best-of-repeats time per step (ms), and the
ratio to the GradNet model, all measured in one run on one CPU thread (or on the GPU, each
timing ending with ``torch.cuda.synchronize``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from hamgrad.models import MODELS, get_model
from hamgrad.nets import count_parameters, hidden_for_budget
from hamgrad.training import DerivativeLoss


def _time_step(model, q, p, dq, dp, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss, batch = DerivativeLoss(), {"q": q, "p": p, "dq_dt": dq, "dp_dt": dp}

    def step():  # the training loop's step: the library's loss, backward, Adam
        opt.zero_grad(set_to_none=True)
        loss(model, batch).backward()
        opt.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if q.is_cuda:
        torch.cuda.synchronize()  # the GPU's work, not only its launch
    return (time.perf_counter() - start) / steps


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dof", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    print(
        f"batch {args.batch}, depth {args.depth}, <= {args.budget} parameters, float32, "
        f"{args.device} (1 CPU thread), best of {args.repeats} x {args.steps} steps"
    )
    print(
        f"{'dof':>3}  {'model':<18} {'hidden':>6} {'params':>7} {'ms/step':>8} {'vs gradnet':>10}"
    )
    for dof in args.dof:
        q, p, dq, dp = (
            torch.randn(args.batch, dof, generator=g, dtype=torch.float32).to(args.device)
            for _ in range(4)
        )
        models = {}
        for name in MODELS:
            hidden = hidden_for_budget(
                lambda h, name=name, dof=dof: get_model(name, dof, hidden=h, depth=args.depth),
                args.budget,
            )
            models[name] = get_model(
                name,
                dof,
                hidden=hidden,
                depth=args.depth,
                generator=torch.Generator().manual_seed(1),
            ).to(args.device, torch.float32)
        best = {name: float("inf") for name in models}
        for _ in range(args.repeats):  # interleaved, so load changes hit every model alike
            for name, model in models.items():
                best[name] = min(best[name], _time_step(model, q, p, dq, dp, args.steps))
        for name, model in models.items():
            print(
                f"{dof:>3}  {name:<18} {model.hparams['hidden']:>6} "
                f"{count_parameters(model):>7} {best[name] * 1e3:>8.3f} "
                f"{best[name] / best['gradnet']:>10.2f}"
            )


if __name__ == "__main__":
    main()
