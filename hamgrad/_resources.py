"""Memory the machine has, and refusing work that would need more before it starts.

``hamgrad simulate --n-train 1000000000000`` used to grow until the kernel killed it. Commands
estimate what they will hold in memory from their arguments and call `check_memory` first, so
an absurd request costs one line instead of a swapped-out machine.
"""

from __future__ import annotations

import os

from hamgrad.errors import ConfigError

__all__ = ["available_memory", "check_memory", "format_bytes"]


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``, else free RAM)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; binary units up to EiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"


def check_memory(what: str, nbytes: float, hint: str) -> None:
    """Raise `ConfigError` when ``what`` would need more than the available memory.

    Parameters
    ----------
    what : str
        The request, as the user wrote it (``"--n-train 1000000000000"``).
    nbytes : float
        Estimated bytes it would hold at once.
    hint : str
        What to do instead (``"use fewer trajectories or --shard"``).
    """
    available = available_memory()
    if nbytes > available:
        raise ConfigError(
            f"{what} would need about {format_bytes(nbytes)} of memory, more than "
            f"the {format_bytes(available)} available; {hint}"
        )
