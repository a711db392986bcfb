"""Named coefficient tables, each with its source.

Splitting tables use the convention of `SplittingTableau`: ``("D", a)`` drifts positions with
``∂H/∂p``, ``("K", b)`` kicks momenta with ``-∂H/∂q``. Composition methods are built from the
velocity-Verlet step ``K(1/2) D(1) K(1/2)`` with `compose`, so their final kick and the next
step's first kick share one force evaluation in a rollout.
"""

from __future__ import annotations

import math

from hamgrad.integrators.tableau import DRIFT, KICK, ButcherTableau, Op, SplittingTableau, compose

__all__ = ["BUTCHER_TABLEAUS", "SPLITTING_TABLEAUS"]


def _palindrome(first_half: list[float]) -> list[float]:
    """Weights ``w_1..w_m, w_{m+1}, w_m..w_1`` from ``[w_1..w_m]`` and ``Σ w = 1``."""
    centre = 1.0 - 2.0 * math.fsum(first_half)
    return [*first_half, centre, *reversed(first_half)]


def _alternate(drifts: list[float], kicks: list[float]) -> list[Op]:
    """Interleave ``D(a_1) K(b_1) D(a_2) K(b_2) … D(a_{m+1})`` (one more drift than kicks)."""
    ops: list[Op] = []
    for a, b in zip(drifts, kicks, strict=False):
        ops += [(DRIFT, a), (KICK, b)]
    ops += [(DRIFT, a) for a in drifts[len(kicks) :]]
    return ops


def _symmetric_split(a_half: list[float], b_half: list[float]) -> list[Op]:
    """Symmetric ``D K D … D`` method from the first halves of its drift and kick weights.

    ``a_half`` holds ``a_1..a_m`` (the central drift is ``1 − 2Σa``), ``b_half`` holds
    ``b_1..b_{m-1}`` (the central pair of kicks is ``1/2 − Σb`` each), as in Blanes & Moan (2002).
    """
    kicks_half = [*b_half, 0.5 - math.fsum(b_half)]
    return _alternate(_palindrome(a_half), kicks_half + kicks_half[::-1])


# Omelyan, Mryglod & Folk (2002) eq. (20): position-extended Forest-Ruth-like (PEFRL).
_PEFRL_XI = 0.1786178958448091
_PEFRL_LAMBDA = -0.2123418310626054
_PEFRL_CHI = -0.06626458266981849

_VERLET: list[Op] = [(KICK, 0.5), (DRIFT, 1.0), (KICK, 0.5)]
_CBRT2 = 2.0 ** (1.0 / 3.0)
_FR_W1 = 1.0 / (2.0 - _CBRT2)

# McLachlan (1995) order 8, 15 stages, as tabulated in Hairer-Lubich-Wanner (2006) eq. V.3.14.
_SO8_HALF = [
    0.74167036435061295344822780,
    -0.40910082580003159399730010,
    0.19075471029623837995387626,
    -0.57386247111608226665638773,
    0.29906418130365592384446354,
    0.33462491824529818378495798,
    0.31529309239676659663205666,
]
# Yoshida (1990) Table 1, solution A (order 6, 7 stages): w3, w2, w1 then w0 = 1 - 2(w1+w2+w3).
_Y6A_HALF = [0.784513610477560, 0.235573213359357, -1.17767998417887]

_SPLITTINGS = [
    SplittingTableau(
        "symplectic-euler",
        1,
        ((KICK, 1.0), (DRIFT, 1.0)),
        reversible=False,
        reference="Hairer-Lubich-Wanner (2006) Thm. VI.3.3 (kick with V'(q_n), then drift)",
    ),
    SplittingTableau(
        "leapfrog",
        2,
        tuple(_VERLET),
        reversible=True,
        reference="Störmer-Verlet; Verlet, Phys. Rev. 159 (1967) 98; HLW (2006) sec. I.3.1",
    ),
    SplittingTableau(
        "yoshida4",
        4,
        compose(_VERLET, [_FR_W1, -_CBRT2 * _FR_W1, _FR_W1]),
        reversible=True,
        reference="Forest & Ruth, Physica D 43 (1990) 105; Yoshida, Phys. Lett. A 150 (1990) 262",
    ),
    SplittingTableau(
        "pefrl",
        4,
        tuple(
            _alternate(
                _palindrome([_PEFRL_XI, _PEFRL_CHI]),
                [0.5 - _PEFRL_LAMBDA, _PEFRL_LAMBDA, _PEFRL_LAMBDA, 0.5 - _PEFRL_LAMBDA],
            )
        ),
        reversible=True,
        reference="Omelyan, Mryglod & Folk, Comput. Phys. Commun. 146 (2002) 188, eq. (20)",
    ),
    SplittingTableau(
        "blanes-moan4",
        4,
        tuple(
            _symmetric_split(
                [0.0792036964311957, 0.353172906049774, -0.0420650803577195],
                [0.209515106613362, -0.143851773179818],
            )
        ),
        reversible=True,
        reference="Blanes & Moan, J. Comput. Appl. Math. 142 (2002) 313, Table 2 (S6, order 4)",
    ),
    SplittingTableau(
        "blanes-moan6",
        6,
        tuple(
            _symmetric_split(
                [
                    0.0502627644003922,
                    0.413514300428344,
                    0.0450798897943977,
                    -0.188054853819569,
                    0.541960678450780,
                ],
                [0.148816447901042, -0.132385865767784, 0.067307604692185, 0.432666402578175],
            )
        ),
        reversible=True,
        reference="Blanes & Moan, J. Comput. Appl. Math. 142 (2002) 313, Table 3 (S10, order 6)",
    ),
    SplittingTableau(
        "yoshida6",
        6,
        compose(_VERLET, _palindrome(_Y6A_HALF)),
        reversible=True,
        reference="Yoshida, Phys. Lett. A 150 (1990) 262, Table 1 solution A",
    ),
    SplittingTableau(
        "mclachlan8",
        8,
        compose(_VERLET, _palindrome(_SO8_HALF)),
        reversible=True,
        reference=(
            "McLachlan, SIAM J. Sci. Comput. 16 (1995) 151 (order 8, 15 stages); "
            "coefficients as in Hairer-Lubich-Wanner (2006) sec. V.3.2"
        ),
    ),
]

#: Splitting tables by registry name.
SPLITTING_TABLEAUS: dict[str, SplittingTableau] = {t.name: t for t in _SPLITTINGS}

_R3 = math.sqrt(3.0)
_R15 = math.sqrt(15.0)

_TABLEAUS = [
    ButcherTableau(
        "implicit-midpoint",
        2,
        A=((0.5,),),
        b=(1.0,),
        c=(0.5,),
        symplectic=True,
        reference="Gauss-Legendre s=1; HLW (2006) sec. II.1.1",
    ),
    ButcherTableau(
        "gauss4",
        4,
        A=((0.25, 0.25 - _R3 / 6), (0.25 + _R3 / 6, 0.25)),
        b=(0.5, 0.5),
        c=(0.5 - _R3 / 6, 0.5 + _R3 / 6),
        symplectic=True,
        reference="Butcher, Math. Comp. 18 (1964) 50; HLW (2006) Table II.1.1",
    ),
    ButcherTableau(
        "gauss6",
        6,
        A=(
            (5 / 36, 2 / 9 - _R15 / 15, 5 / 36 - _R15 / 30),
            (5 / 36 + _R15 / 24, 2 / 9, 5 / 36 - _R15 / 24),
            (5 / 36 + _R15 / 30, 2 / 9 + _R15 / 15, 5 / 36),
        ),
        b=(5 / 18, 4 / 9, 5 / 18),
        c=(0.5 - _R15 / 10, 0.5, 0.5 + _R15 / 10),
        symplectic=True,
        reference="Butcher, Math. Comp. 18 (1964) 50; HLW (2006) Table II.1.1",
    ),
    ButcherTableau(
        "rk4",
        4,
        A=((0.0, 0.0, 0.0, 0.0), (0.5, 0.0, 0.0, 0.0), (0.0, 0.5, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
        c=(0.0, 0.5, 0.5, 1.0),
        symplectic=False,
        reference="Kutta, Z. Math. Phys. 46 (1901) 435; the classical Runge-Kutta method",
    ),
]

#: Butcher tableaus by registry name.
BUTCHER_TABLEAUS: dict[str, ButcherTableau] = {t.name: t for t in _TABLEAUS}
