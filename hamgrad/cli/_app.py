"""The ``hamgrad`` click group and what every command shares: errors, options, parsing.

Every `HamgradError`, every click usage error and every unreadable path becomes one line on
stderr and exit code 2, never a traceback. Commands live in sibling modules
(`hamgrad.cli.data_cmds`, `hamgrad.cli.model_cmds`) and import the library inside their
bodies, so ``hamgrad --help`` and ``hamgrad --version`` answer without loading torch.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

import click

from hamgrad._version import __version__
from hamgrad.errors import ConfigError, HamgradError

__all__ = ["LazyChoice", "main", "parse_params", "threads_option"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Warnings (a close encounter in a simulation, ...) as one line, without source lines."""
    click.echo(f"hamgrad: warning: {_one_line(str(message))}", err=True)


class _Group(click.Group):
    """Click group that turns library and usage errors into one line and exit code 2."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Run the command; in standalone mode every way out is one line and an exit code."""
        run = cast(Any, super()).main
        warnings.showwarning = _show_warning
        if not standalone_mode:
            return run(*args, standalone_mode=False, **kwargs)
        try:
            result = run(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:  # bad option value, missing argument, unknown command
            hint = f"; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
            if os.environ.get("RANK", "0") in ("", "0"):  # under torchrun, rank 0 says it
                click.echo(f"hamgrad: error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"hamgrad: error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort as exc:  # Ctrl-C (click turns KeyboardInterrupt into Abort)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C changes nothing
            click.echo(f"hamgrad: {exc or 'interrupted'}", err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HamgradError as exc:
            # A distributed run's other ranks stop quietly: the failing rank says why.
            if not getattr(exc, "reported_elsewhere", False):
                click.echo(f"hamgrad: error: {exc}", err=True)
            code = 2
        except BrokenPipeError:  # `hamgrad info f.h5 | head`: the reader left, nothing is wrong
            sys.stderr.close()
            code = 0
        except OSError as exc:  # unreadable / unwritable paths: still one line, exit 2
            click.echo(
                f"hamgrad: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
                err=True,
            )
            code = 2
        # Exit outside the handler, after a collection: the error's traceback holds the frames
        # of the failed command (a training run's DDP model and its reducer among them). Left
        # to interpreter shutdown, tearing those down can abort a torchrun process (gloo's
        # threads need a live interpreter; pytorch/pytorch#179291); freed here, they cannot.
        gc.collect()
        sys.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hamgrad")
def main() -> None:
    """hamgrad: learn Hamiltonian dynamics with gradient networks.

    Simulate a physical system to an HDF5 dataset, train a model whose ∇H is a gradient network,
    roll it out with a symplectic integrator and evaluate how long it stays right.
    """


class LazyChoice(click.Choice):
    """A `click.Choice` whose choices come from a registry, read on first use.

    The registries live in modules that load torch; reading them only when an option is
    parsed or its help shown keeps ``hamgrad --help`` fast, and the CLI can never offer a
    name the library does not have.
    """

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        self._loaded: Sequence[str] | None = None
        super().__init__((), case_sensitive=True)

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        if self._loaded is None:
            self._loaded = sorted(self._load())
        return self._loaded

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        pass  # set by click.Choice.__init__; the registry is the only source


def parse_params(items: Sequence[str], option: str = "--param") -> dict[str, Any]:
    """Repeated ``NAME=VALUE`` options as a dict.

    Values are read as JSON when they parse (numbers, booleans, lists such as
    ``masses=[1,2,3]``, ``null``) and kept as strings otherwise (``ends=periodic``); the
    receiver checks each value's type.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} must look like NAME=VALUE, got {item!r}")
        try:
            params[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            params[key.strip()] = text
    return params


def threads_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--threads N`` for commands that run torch outside training (default 1).

    Training takes the same flag into its `TrainConfig` (it is recorded in the run); both end
    in `hamgrad._device.set_threads`.
    """

    def apply(ctx: click.Context, _param: click.Parameter, value: int) -> int:
        from hamgrad._device import set_threads

        set_threads(value)
        return value

    return click.option(
        "--threads",
        type=click.IntRange(min=0),
        default=1,
        show_default=True,
        expose_value=False,
        callback=apply,
        help="CPU threads for torch (0: torch's default).",
    )(fn)
