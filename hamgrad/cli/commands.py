"""Registration point for CLI commands (each lives in its own module under hamgrad.cli)."""
