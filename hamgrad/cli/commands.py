"""Registration point for CLI commands (each lives in its own module under hamgrad.cli)."""
from hamgrad.cli import (
    data_cmds,  # noqa: F401
    model_cmds,  # noqa: F401
)
