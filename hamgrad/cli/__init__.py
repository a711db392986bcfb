"""The ``hamgrad`` command line: `main`, a click group, and its commands.

The group and what every command shares are in `hamgrad.cli._app`; the commands are in
`hamgrad.cli.data_cmds` (simulate, info, list-systems) and `hamgrad.cli.model_cmds` (train,
rollout, evaluate, plot), registered on `main` when those modules are imported here.
"""

from hamgrad.cli import data_cmds, model_cmds
from hamgrad.cli._app import main

__all__ = ["data_cmds", "main", "model_cmds"]
