"""Coefficient tables of splitting and Runge–Kutta methods, checked when constructed.

Two kinds of table describe every method in `hamgrad.integrators`:

- `SplittingTableau`: a sequence of *drifts* ``q += a·dt·∂H/∂p`` and *kicks* ``p -= b·dt·∂H/∂q``
  for separable ``H = T(p) + V(q)``. Consecutive operations of the same kind are merged when
  the table is built (there is nothing between them), zero coefficients are dropped, and the
  merged sequence is what the generic stepper runs.
- `ButcherTableau`: the ``(A, b, c)`` of a Runge–Kutta method.

A table that breaks consistency (weights not summing to one), a symmetry it claims, or the
symplecticity condition it claims raises `ConfigError` at construction, so a typo in a
coefficient can never silently ship.

References
----------
E. Hairer, C. Lubich, G. Wanner, *Geometric Numerical Integration*, 2nd ed., Springer 2006:
splitting and composition (ch. II.5, V.3), symplectic Runge–Kutta condition (Thm. VI.4.3).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from hamgrad.errors import ConfigError

__all__ = [
    "DRIFT",
    "KICK",
    "ButcherTableau",
    "Op",
    "SplittingTableau",
    "compose",
    "merge_ops",
]

#: Kind of a splitting operation: position update (``"D"``) or momentum update (``"K"``).
OpKind = Literal["D", "K"]
DRIFT: OpKind = "D"
KICK: OpKind = "K"
Op = tuple[str, float]

# Coefficients are published to ~16 digits; sums of up to ~20 of them carry roundoff of a few ulp.
_TABLE_TOL = 1e-13


def merge_ops(ops: Iterable[Op]) -> tuple[Op, ...]:
    """Merge consecutive operations of the same kind and drop zero coefficients.

    Parameters
    ----------
    ops : iterable of (kind, coefficient)
        ``kind`` is any hashable label; two adjacent operations with equal labels are flows of
        the same vector field, so ``φ^a ∘ φ^b = φ^{a+b}`` and they merge into one.

    Returns
    -------
    tuple of (kind, coefficient)
        The shortest equivalent sequence.
    """
    merged: list[Op] = []
    for kind, coef in ops:
        if coef == 0.0:
            continue
        if merged and merged[-1][0] == kind:
            total = merged[-1][1] + coef
            merged.pop()
            if total != 0.0:
                merged.append((kind, total))
        else:
            merged.append((kind, float(coef)))
    return tuple(merged)


def compose(base: Sequence[Op], weights: Sequence[float]) -> tuple[Op, ...]:
    """Compose a one-step method with itself at fractional steps ``w_i·dt``.

    Returns the merged operation sequence of ``Φ_{w_m dt} ∘ … ∘ Φ_{w_1 dt}`` (``w_1`` runs
    first), the construction of Yoshida (1990) and Suzuki (1990) triple-jump style methods.
    """
    return merge_ops((kind, w * coef) for w in weights for kind, coef in base)


def _is_palindrome(ops: Sequence[Op]) -> bool:
    return all(
        k1 == k2 and abs(c1 - c2) <= _TABLE_TOL * max(1.0, abs(c1))
        for (k1, c1), (k2, c2) in zip(ops, reversed(ops), strict=True)
    )


@dataclass(frozen=True)
class SplittingTableau:
    """A kick–drift splitting method for separable Hamiltonians ``H = T(p) + V(q)``.

    Parameters
    ----------
    name : str
        Registry name.
    order : int
        Classical order of the method.
    ops : sequence of (kind, coefficient)
        Operations in the order they are applied within one step: ``("D", a)`` is
        ``q ← q + a·dt·∂H/∂p(p)``, ``("K", b)`` is ``p ← p − b·dt·∂H/∂q(q)``. Stored merged
        (see `merge_ops`).
    reversible : bool
        Whether the method is claimed time-reversible (self-adjoint, ``Φ_{-dt} = Φ_dt^{-1}``),
        i.e. the merged operation sequence is a palindrome.
    reference : str
        Citation of the coefficients.

    Raises
    ------
    ConfigError
        If the drift or kick coefficients do not each sum to one, or reversibility is claimed
        and the sequence is not a palindrome.
    """

    name: str
    order: int
    ops: tuple[Op, ...]
    reversible: bool
    reference: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", merge_ops(self.ops))
        for kind, label in ((DRIFT, "drift"), (KICK, "kick")):
            total = math.fsum(c for k, c in self.ops if k == kind)
            if abs(total - 1.0) > _TABLE_TOL:
                raise ConfigError(
                    f"splitting table {self.name!r}: {label} coefficients sum to {total!r}, "
                    "expected 1"
                )
        if any(k not in (DRIFT, KICK) for k, _ in self.ops):
            raise ConfigError(f"splitting table {self.name!r}: operation kinds must be 'D' or 'K'")
        if self.reversible and not _is_palindrome(self.ops):
            raise ConfigError(
                f"splitting table {self.name!r} claims reversibility but its merged operations "
                f"{self.ops} are not a palindrome"
            )

    @property
    def force_evals_per_step(self) -> int:
        """Evaluations of ∂H/∂q per step in a rollout (a last kick reused by the next step)."""
        kicks = sum(1 for k, _ in self.ops if k == KICK)
        fsal = len(self.ops) > 1 and self.ops[0][0] == KICK and self.ops[-1][0] == KICK
        return kicks - int(fsal)


@dataclass(frozen=True)
class ButcherTableau:
    """Butcher tableau ``(A, b, c)`` of an ``s``-stage Runge–Kutta method.

    Parameters
    ----------
    name : str
        Registry name.
    order : int
        Classical order.
    A : tuple of tuple of float
        ``s × s`` stage matrix; strictly lower triangular for an explicit method.
    b : tuple of float
        Weights, summing to one.
    c : tuple of float
        Nodes; must equal the row sums of ``A``.
    symplectic : bool
        Claimed symplectic: checked against ``b_i a_ij + b_j a_ji − b_i b_j = 0`` for all
        ``i, j`` (Sanz-Serna 1988; Hairer–Lubich–Wanner Thm. VI.4.3).
    reference : str
        Citation.

    Raises
    ------
    ConfigError
        If a shape is wrong, ``Σ b ≠ 1``, ``c`` differs from the row sums of ``A``, or the
        symplecticity condition fails for a tableau that claims it.
    """

    name: str
    order: int
    A: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    symplectic: bool
    reference: str

    def __post_init__(self) -> None:
        s = len(self.b)
        if len(self.c) != s or len(self.A) != s or any(len(row) != s for row in self.A):
            raise ConfigError(
                f"Butcher tableau {self.name!r}: A must be {s}x{s} and c of length {s} to match b"
            )
        if abs(math.fsum(self.b) - 1.0) > _TABLE_TOL:
            raise ConfigError(
                f"Butcher tableau {self.name!r}: weights b sum to {math.fsum(self.b)!r}, expected 1"
            )
        for i, row in enumerate(self.A):
            if abs(math.fsum(row) - self.c[i]) > _TABLE_TOL:
                raise ConfigError(
                    f"Butcher tableau {self.name!r}: row {i} of A sums to {math.fsum(row)!r}, "
                    f"expected c[{i}] = {self.c[i]!r}"
                )
        if self.symplectic:
            worst = self.symplecticity_defect()
            if worst > _TABLE_TOL:
                raise ConfigError(
                    f"Butcher tableau {self.name!r} claims symplecticity but "
                    f"max |b_i a_ij + b_j a_ji - b_i b_j| = {worst:.3g}, expected 0"
                )

    @property
    def stages(self) -> int:
        """Number of stages ``s``."""
        return len(self.b)

    @property
    def explicit(self) -> bool:
        """True when ``A`` is strictly lower triangular."""
        return all(self.A[i][j] == 0.0 for i in range(self.stages) for j in range(i, self.stages))

    def symplecticity_defect(self) -> float:
        """Return ``max_ij |b_i a_ij + b_j a_ji − b_i b_j|`` (zero for symplectic methods)."""
        s, A, b = self.stages, self.A, self.b
        return max(
            abs(b[i] * A[i][j] + b[j] * A[j][i] - b[i] * b[j]) for i in range(s) for j in range(s)
        )


def __getattr__(name: str) -> object:
    # Deprecated names, kept for one release (0.2 renamed SplittingTable -> SplittingTableau).
    if name == "SplittingTable":
        warnings.warn(
            "SplittingTable is deprecated; use SplittingTableau (field 'symmetric' is now "
            "'reversible')",
            DeprecationWarning,
            stacklevel=2,
        )
        return SplittingTableau
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
