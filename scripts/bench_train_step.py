"""Training cost of every model: time per step at equal parameters, and time to accuracy (issue 11).

**Step cost** (section ``cost``). One training step of the library (`hamgrad.training.step.
TrainStep`: derivative loss, backward, gradient clipping, the fused Adam of
`hamgrad.training.OPTIMIZERS`) for every model variant of `VARIANTS` at (about) the same
parameter count, at each batch size and dof, float32, one torch thread, interleaved and
repeated so that load changes hit every model alike. Time is the thread's CPU time
(`time.thread_time`), best of the repeats: with one torch thread that is the step's own compute,
unaffected by other processes waiting for the same cores (this machine is shared). Each row also
counts, in one traced step, the ATen kernels that do work (views excluded), the matrix-product
FLOPs per sample and the tensor elements the kernels write per sample (their memory traffic).
With ``--compile`` the same step is also timed compiled by `torch.compile` (inductor), after
the compilation, whose wall time is reported. Section ``kernels`` times, alone, the two kernel
choices of the fused GradNet-C (`hamgrad.nets._fused`): ``tanh`` against ``sigmoid``, and the
two layouts of a skinny matrix product.

**Time to accuracy** (section ``tta``). Each variant is trained with `hamgrad.training.train`
(derivative loss, Adam at the model's own default rate with cosine decay, batch 256; BENCHMARKS.md
§6.2 before §6.5 used 3e-3 for every model) at several parameter budgets on
pendulum, spring chain (10 masses) and three-body data (the datasets of
``bench_hamiltonian.py`` at the same profile), seeds 0–2; the target is the HNN's final validation
derivative error at the reference budget (median over its seeds), and the table gives each
run's wall time until its validation error first reaches that target (epoch times summed,
validation included), its final error and time per epoch: medians over seeds, so a Pareto
view of accuracy against time beside the equal-parameter one.

Usage::

    python scripts/bench_train_step.py --sections cost                  # minutes
    python scripts/bench_train_step.py --sections cost --compile        # + compiled step
    python scripts/bench_train_step.py --sections tta --json /tmp/tta.json
    python scripts/bench_train_step.py --report /tmp/tta.json

Measured tables: BENCHMARKS.md, section 6.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import _bench
import bench_hamiltonian
import torch
from bench_hamiltonian import SYSTEM_SPECS
from torch.utils._python_dispatch import TorchDispatchMode

from hamgrad.data import load_dataset
from hamgrad.models import MODELS, get_model, hparams_for_data
from hamgrad.nets import count_parameters, hidden_for_budget
from hamgrad.training import OPTIMIZERS, DerivativeLoss
from hamgrad.training.step import Objective, TrainStep
from simulators import get_system


@dataclass(frozen=True)
class Variant:
    """A model variant: registry name, fixed hyperparameters, separable systems only?"""

    model: str
    hparams: dict[str, Any] = field(default_factory=dict)
    separable_only: bool = False


VARIANTS: dict[str, Variant] = {
    "gradnet-c": Variant("gradnet", {"net": "gradnet-c"}),
    "gradnet-m": Variant("gradnet", {"net": "gradnet-m"}),
    "separable-gradnet": Variant("separable-gradnet", {}, separable_only=True),
    "hnn": Variant("hnn"),
    "neural-ode": Variant("neural-ode"),
}
REFERENCE = "hnn"


@dataclass(frozen=True)
class Profile:
    """Sizes of one run of either section."""

    batches: tuple[int, ...]
    dofs: tuple[int, ...]
    budget: int
    steps: int  # timed steps per repeat at batch 256 (scaled down for larger batches)
    repeats: int
    tta_systems: tuple[str, ...]
    tta_budgets: tuple[int, ...]
    tta_reference_budget: int
    tta_variants: tuple[str, ...]
    epochs: int
    seeds: tuple[int, ...]


PROFILES = {
    "smoke": Profile(
        (8,), (2,), 600, 2, 1, ("pendulum",), (600,), 600, ("gradnet-c", "hnn"), 2, (0,)
    ),
    "quick": Profile(
        (256,),
        (1, 3),
        2000,
        20,
        3,
        ("pendulum",),
        (1000, 4000),
        4000,
        ("gradnet-c", "hnn"),
        20,
        (0,),
    ),
    "full": Profile(
        (256, 4096),
        (1, 3, 12),
        2000,
        200,
        7,
        ("pendulum", "spring-chain-10", "three-body"),
        (1000, 4000),
        4000,
        ("gradnet-c", "separable-gradnet", "hnn", "neural-ode"),
        100,
        (0, 1, 2),
    ),
}


# ----------------------------------------------------------------------------- step cost


class _KernelCount(TorchDispatchMode):
    """Counts the ATen kernels that compute (views and metadata-only ops excluded)."""

    MATMULS = frozenset({"mm", "addmm", "bmm", "baddbmm"})

    def __init__(self) -> None:
        super().__init__()
        self.kernels = 0
        self.flops = 0
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if func.is_view or name in ("detach", "empty", "empty_strided", "lift_fresh"):
            return out
        self.kernels += 1
        outputs = out if isinstance(out, (tuple, list)) else [out]
        self.elements += sum(t.numel() for t in outputs if isinstance(t, torch.Tensor))
        if name in self.MATMULS:
            a, b = (args[-2], args[-1]) if name.startswith(("add", "badd")) else args[:2]
            self.flops += (
                2 * a.shape[-2] * a.shape[-1] * b.shape[-1] * (a.shape[0] if a.ndim == 3 else 1)
            )
        return out


def _build(label: str, dof: int, budget: int) -> torch.nn.Module:
    spec = VARIANTS[label]
    hp = {**spec.hparams}

    def build(hidden: int) -> torch.nn.Module:
        return get_model(spec.model, dof, **hp, hidden=hidden)

    hidden = hidden_for_budget(build, budget)
    return get_model(
        spec.model, dof, generator=torch.Generator().manual_seed(1), **hp, hidden=hidden
    ).float()


def _step(model: torch.nn.Module, compile: bool = False) -> TrainStep:
    opt = OPTIMIZERS["adam"](model.parameters(), lr=1e-4, weight_decay=0.0)
    return TrainStep(Objective(model, DerivativeLoss()), opt, grad_clip=10.0, compile=compile)


def _cpu_seconds(step: TrainStep, batch: dict[str, torch.Tensor], steps: int) -> float:
    """Seconds per step: this thread's CPU time, or wall time to a synchronised GPU."""
    cuda = next(iter(batch.values())).is_cuda
    clock = time.perf_counter if cuda else time.thread_time
    started = clock()
    for _ in range(steps):
        step(batch)
    if cuda:
        torch.cuda.synchronize()  # the GPU's work, not only its launch
    return (clock() - started) / steps


def measure_cost(args: argparse.Namespace, profile: Profile, results: dict[str, Any]) -> None:
    """Fill ``results['cost']`` with one row per (batch, dof, variant)."""
    rows = results.setdefault("cost", [])
    labels = [v for v in args.variants if v in VARIANTS]
    for batch_size in profile.batches:
        steps = max(2, profile.steps * 256 // max(batch_size, 256))
        for dof in profile.dofs:
            g = torch.Generator().manual_seed(0)
            batch = {
                k: torch.randn(batch_size, dof, generator=g, dtype=torch.float32).to(args.device)
                for k in ("q", "p", "dq_dt", "dp_dt")
            }
            models = {label: _build(label, dof, profile.budget).to(args.device) for label in labels}
            eager = {label: _step(m) for label, m in models.items()}
            for step in eager.values():
                step(batch)  # warm-up
            best = {label: float("inf") for label in labels}
            for _ in range(profile.repeats):
                for label, step in eager.items():
                    best[label] = min(best[label], _cpu_seconds(step, batch, steps))
            compiled: dict[str, tuple[float, float]] = {}
            if args.compile:
                for label, model in models.items():
                    # A fresh compiler cache per model: torch stops compiling (and silently runs
                    # eager) once one function has been recompiled for 8 different models.
                    torch._dynamo.reset()
                    step = _step(model, compile=True)
                    step(batch)  # compiles
                    seconds = min(_cpu_seconds(step, batch, steps) for _ in range(profile.repeats))
                    compiled[label] = (seconds, step.compile_seconds or 0.0)
            for label, model in models.items():
                with _KernelCount() as count:
                    eager[label](batch)
                rows.append(
                    {
                        "batch": batch_size,
                        "dof": dof,
                        "model": label,
                        "hidden": model.hparams["hidden"],
                        "params": count_parameters(model),
                        "ms": best[label] * 1e3,
                        "kernels": count.kernels,
                        "mflop_per_sample": count.flops / batch_size / 1e6,
                        "elements_per_sample": count.elements / batch_size,
                        **(
                            {
                                "compiled_ms": compiled[label][0] * 1e3,
                                "compile_s": compiled[label][1],
                            }
                            if label in compiled
                            else {}
                        ),
                    }
                )
                _bench.log(f"  batch {batch_size} dof {dof} {label}: {best[label] * 1e3:.3f} ms")
            _bench.write_json(args.json, results)


def format_cost(rows: list[dict[str, Any]]) -> str:
    """Markdown: ms/step and ratio to the reference at each (batch, dof)."""
    ref = {(r["batch"], r["dof"]): r for r in rows if r["model"] == REFERENCE}
    compiled = any("compiled_ms" in r for r in rows)
    header = ["batch", "dof", "model", "hidden", "params", "ms/step", f"/ {REFERENCE}"]
    header += ["kernels/step", "MFLOP/sample (matmul)", "elements written/sample"]
    if compiled:
        header += ["compiled ms/step", f"compiled / {REFERENCE} compiled", "compile s"]
    out = []
    for r in rows:
        base = ref.get((r["batch"], r["dof"]))
        line = [
            str(r["batch"]),
            str(r["dof"]),
            r["model"],
            str(r["hidden"]),
            str(r["params"]),
            f"{r['ms']:.3f}",
            f"{r['ms'] / base['ms']:.2f}" if base else "n/a",
            str(r["kernels"]),
            f"{r['mflop_per_sample']:.3f}",
            f"{r['elements_per_sample']:,.0f}",
        ]
        if compiled:
            has = "compiled_ms" in r and base is not None and "compiled_ms" in base
            line += [
                f"{r['compiled_ms']:.3f}" if "compiled_ms" in r else "n/a",
                f"{r['compiled_ms'] / base['compiled_ms']:.2f}" if has else "n/a",
                f"{r['compile_s']:.1f}" if "compile_s" in r else "n/a",
            ]
        out.append(line)
    return _bench.markdown(header, out)


# ----------------------------------------------------------------------------- kernels


def _best_us(fn: Any, repeats: int = 7, n: int = 20) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        for _ in range(n):
            fn()
        best = min(best, (time.thread_time() - started) / n)
    return best * 1e6


def measure_kernels(args: argparse.Namespace, profile: Profile, results: dict[str, Any]) -> None:
    """The two kernel choices of `hamgrad.nets._fused`, timed alone: ``tanh`` against
    ``sigmoid``, and skinny matrix products in the two layouts (``results['kernels']``)."""
    rows = results.setdefault("kernels", [])
    g = torch.Generator().manual_seed(0)
    for batch_size in profile.batches:
        for dof in profile.dofs:
            h, d = 117, 2 * dof
            z = torch.randn(batch_size, h, generator=g, dtype=torch.float32)
            W = torch.randn(h, d, generator=g, dtype=torch.float32)
            x = torch.randn(batch_size, d, generator=g, dtype=torch.float32)
            timed = {
                "tanh(z)": lambda z=z: torch.tanh(z),
                "sigmoid(z)": lambda z=z: torch.sigmoid(z),
                "z @ W": lambda z=z, W=W: z @ W,
                "(Wᵀ zᵀ)ᵀ": lambda z=z, W=W: (W.t() @ z.t()).t(),
                "zᵀ @ x": lambda z=z, x=x: z.t() @ x,
                "(xᵀ z)ᵀ": lambda z=z, x=x: (x.t() @ z).t(),
            }
            for name, fn in timed.items():
                rows.append({"batch": batch_size, "h": h, "d": d, "op": name, "us": _best_us(fn)})


def format_kernels(rows: list[dict[str, Any]]) -> str:
    """Markdown: µs per call, ``[batch, h]`` activations and ``[h, d]`` weights."""
    return _bench.markdown(
        ["batch", "h", "d", "op", "µs"],
        [[str(r["batch"]), str(r["h"]), str(r["d"]), r["op"], f"{r['us']:.1f}"] for r in rows],
    )


# ----------------------------------------------------------------------------- time to accuracy


def measure_tta(args: argparse.Namespace, profile: Profile, results: dict[str, Any]) -> None:
    """Fill ``results['tta']['runs']``: every (seed, system, variant, budget) training history."""
    out = results.setdefault("tta", {"runs": []})
    plans = []
    for system in profile.tta_systems:
        # the main benchmark's dataset of the same profile (cached, shared with it)
        path = bench_hamiltonian.dataset_path(
            args, bench_hamiltonian.PROFILES[args.profile], system
        )
        data = load_dataset(path)
        spec_ = SYSTEM_SPECS[system]
        separable = get_system(spec_.system, **spec_.params).separable
        for label in profile.tta_variants:
            spec = VARIANTS[label]
            if spec.separable_only and not separable:
                continue
            hp = hparams_for_data(spec.model, spec.hparams, data.system, data.system_params)
            budgets = sorted({*profile.tta_budgets, profile.tta_reference_budget})
            for budget in budgets:
                hidden, n = _bench.matched_width(spec.model, data.dof, budget, hp)
                plans.append((system, path, label, spec, hp, budget, hidden, n))
    for seed in profile.seeds:  # seeds outermost: load changes spread over every model
        for system, path, label, spec, hp, budget, hidden, n in plans:
            run = _bench.train_run(
                path,
                spec.model,
                {**hp, "hidden": hidden},
                args.work_dir / "tta",
                f"{system}-{label}-{budget}-s{seed}",
                loss="derivative",
                epochs=profile.epochs,
                batch_size=256,
                lr=MODELS[spec.model].default_lr,
                schedule="cosine",
                seed=seed,
            )
            rows = _bench.history(run)
            out["runs"].append(
                {
                    "system": system,
                    "model": label,
                    "budget": budget,
                    "params": n,
                    "seed": seed,
                    "lr": MODELS[spec.model].default_lr,
                    "val_loss": [r["val_loss"] for r in rows],
                    "time_s": [r["time_s"] for r in rows],
                }
            )
            final = _db(min(out["runs"][-1]["val_loss"]))
            _bench.log(f"  {system} {label} {n} seed {seed}: final {final:.2f} dB")
            _bench.write_json(args.json, results)


def _db(x: float) -> float:
    return 10 * float(torch.log10(torch.tensor(x)))


def _time_to(run: dict[str, Any], target: float) -> float | None:
    elapsed = 0.0
    for loss, seconds in zip(run["val_loss"], run["time_s"], strict=True):
        elapsed += seconds
        if loss <= target:
            return elapsed
    return None


def _median_time(runs: list[dict[str, Any]], target: float) -> float:
    """Median over seeds of the time to ``target``, an unreached seed counting as slower than
    every reached one (``inf``)."""
    times = [_time_to(r, target) for r in runs]
    return statistics.median([t if t is not None else float("inf") for t in times])


def format_tta(tta: dict[str, Any], reference_budget: int) -> str:
    """Markdown: per system, the HNN's target and each (variant, budget)'s median numbers."""
    groups = _bench.group(tta["runs"], "system", "model", "budget")
    parts = []
    for system in dict.fromkeys(r["system"] for r in tta["runs"]):
        ref = groups.get((system, REFERENCE, reference_budget), [])
        if not ref:
            continue
        target = statistics.median(min(r["val_loss"]) for r in ref)
        ref_time = _median_time(ref, target)  # the HNN row's own "time to target"
        header = [
            "model",
            "params",
            "final val. deriv. err (dB)",
            "s/epoch",
            "time to target (s)",
            f"/ {REFERENCE}",
            "reached",
        ]
        rows = []
        for (sys_, model, _), runs in groups.items():
            if sys_ != system:
                continue
            reached = [t for r in runs if (t := _time_to(r, target)) is not None]
            med = _median_time(runs, target)
            rows.append(
                [
                    model,
                    str(runs[0]["params"]),
                    f"{statistics.median(_db(min(r['val_loss'])) for r in runs):.2f}",
                    f"{statistics.median(statistics.median(r['time_s']) for r in runs):.3f}",
                    f"{med:.1f}" if reached and med != float("inf") else "not reached",
                    f"{med / ref_time:.2f}" if reached and med != float("inf") else "n/a",
                    f"{len(reached)}/{len(runs)}",
                ]
            )
        parts.append(
            f"#### {system}: target = HNN ({reference_budget} parameters) final validation "
            f"derivative error, {_db(target):.2f} dB (median of {len(ref)} seeds)\n\n"
            + _bench.markdown(header, rows)
        )
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- entry point


SECTIONS = {"cost": measure_cost, "kernels": measure_kernels, "tta": measure_tta}


def measure(args: argparse.Namespace, profile: Profile, results: dict[str, Any]) -> None:
    """Run the chosen sections."""
    results["sections"] = args.sections
    results["reference_budget"] = profile.tta_reference_budget
    for name in args.sections:
        SECTIONS[name](args, profile, results)


def render(results: dict[str, Any]) -> str:
    """The tables of a (possibly partial) results dict."""
    parts = []
    if results.get("cost"):
        settings = results["settings"]
        parts += [
            f"### Step cost: {settings['budget']} parameters (closest below), float32, one "
            "thread, thread CPU time per step, best of "
            f"{settings['repeats']} interleaved repeats",
            format_cost(results["cost"]),
        ]
    if results.get("kernels"):
        parts += [
            "### Kernels alone (thread CPU time per call, best of 7 × 20)",
            format_kernels(results["kernels"]),
        ]
    if results.get("tta"):
        parts += [
            "### Time to the HNN's final accuracy (median of seeds)",
            format_tta(results["tta"], results["reference_budget"]),
        ]
    return "\n\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options (see the module docstring)."""
    parser = _bench.build_parser(__doc__)
    _bench.add_names(parser, "--sections", "section", SECTIONS)
    _bench.add_names(parser, "--variants", "variant", VARIANTS)
    parser.add_argument(
        "--compile", action="store_true", help="also time the torch.compile'd step (cost section)"
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cost section: cpu (thread CPU time) or cuda (wall time, synchronised)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or ``--report``) the sections; print Markdown tables; return 0."""
    return _bench.main(build_parser(), PROFILES, measure, render, argv)


if __name__ == "__main__":
    sys.exit(main())
