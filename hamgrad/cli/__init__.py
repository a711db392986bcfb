"""The ``hamgrad`` command line: a click group whose commands live in small sibling modules.

The CLI is thin: it parses options, calls the library and prints. Every `HamgradError` becomes a
single line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from hamgrad import __version__
from hamgrad.errors import ConfigError, HamgradError


class _Group(click.Group):
    """Click group that turns library errors into one line and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HamgradError as exc:
            click.echo(f"hamgrad: error: {exc}", err=True)
            sys.exit(2)
        except BrokenPipeError:  # `hamgrad info f.h5 | head`: the reader left, nothing is wrong
            sys.stderr.close()
            sys.exit(0)
        except OSError as exc:  # unreadable / unwritable paths: still one line, exit 2
            click.echo(f"hamgrad: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
                       err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hamgrad")
def main() -> None:
    """hamgrad: learn Hamiltonian dynamics with gradient networks.

    Simulate a physical system to an HDF5 dataset, train a model whose ∇H is a gradient network,
    roll it out with a symplectic integrator and evaluate how long it stays right.
    """


def parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    """Repeated ``--param NAME=VALUE`` options as a dict.

    Values are read as JSON when they parse (numbers, booleans, lists such as
    ``masses=[1,2,3]``) and kept as strings otherwise (``ends=periodic``).
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param must look like NAME=VALUE, got {item!r}")
        try:
            params[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            params[key.strip()] = text
    return params


def _register() -> None:
    # Commands are added by their own modules; importing them here keeps this file the only
    # place that wires the whole package together.
    from hamgrad.cli import commands  # noqa: F401


_register()
