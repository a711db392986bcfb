"""Start and stop the processes of a distributed test, and the program each of them runs.

`spawn` starts ``world_size`` Python processes with the environment ``torchrun`` gives its
workers (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` on a free
port of localhost), waits for all of them and kills any left after the timeout, so a hang fails
the test instead of blocking the suite.

Run as a script, this file is one rank's program: ``python _ddp.py JOB`` with JOB a JSON object

- ``{"cli": [...]}``: run ``hamgrad`` with these arguments (``hamgrad.cli.main``);
- ``{"calls": [{"config": {...}} | {"resume": DIR} | {"config": {...}, "stop_after": E}]}``:
  call `hamgrad.training.train` for each, in one process group (``stop_after`` interrupts the
  run after epoch E, as a kill would);

with an optional ``"fault": {"rank": R, "step": S, "kind": "data" | "nan" | "die"}``: at
training step S of the first epoch, rank R's batch cannot be read (a `DatasetError`), holds
NaN, or its process exits at once (as a crash would).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Finished:
    """What one rank left behind."""

    returncode: int
    stdout: str
    stderr: str


def free_port() -> int:
    """A TCP port of localhost that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(world_size: int, job: dict, timeout: float = 240) -> list[Finished]:
    """Run ``job`` (see the module docstring) on ``world_size`` local processes, rank order.

    The machine is shared: if another program took the free port before rank 0 listened on
    it, the job runs again on another port (twice at most).
    """
    for _ in range(3):
        done = _spawn(world_size, job, timeout, free_port())
        if not any("EADDRINUSE" in rank.stderr for rank in done):
            break
    return done


def _spawn(world_size: int, job: dict, timeout: float, port: int) -> list[Finished]:
    procs = []
    for rank in range(world_size):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(Path(__file__)), json.dumps(job)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    done = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            done.append(Finished(proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def _inject(fault: dict) -> None:
    import torch

    from hamgrad.errors import DatasetError
    from hamgrad.training import samples

    if int(os.environ["RANK"]) != fault["rank"]:
        return
    original = samples.SampleSet.batches

    def batches(self, batch_size, generator=None, rank=0, world_size=1):
        for step, (batch, n) in enumerate(original(self, batch_size, generator, rank, world_size)):
            if generator is not None and step == fault["step"]:
                if fault["kind"] == "data":
                    raise DatasetError(f"injected: rank {rank} cannot read its batch {step}")
                if fault["kind"] == "die":
                    os._exit(3)
                batch = {k: torch.full_like(v, float("nan")) for k, v in batch.items()}
            yield batch, n

    samples.SampleSet.batches = batches


class _Stop(Exception):
    pass


def _run(job: dict) -> None:
    if "fault" in job:
        _inject(job["fault"])
    if "cli" in job:
        from hamgrad.cli import main

        sys.argv = ["hamgrad", *job["cli"]]
        main()
        return
    import datetime

    import torch.distributed as dist

    from hamgrad.training import TrainConfig, train

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    try:
        for call in job["calls"]:
            if "resume" in call:
                train(resume=call["resume"])
                continue
            stop = call.get("stop_after")

            def interrupt(epoch: int, stop: int | None = stop) -> None:
                if epoch == stop:
                    raise _Stop

            try:
                train(TrainConfig.from_mapping(call["config"]), on_epoch_end=interrupt)
            except _Stop:
                pass
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _run(json.loads(sys.argv[1]))
