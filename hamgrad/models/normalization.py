"""Input normalisation and feature maps that keep a learned vector field exactly Hamiltonian.

A model sees the phase-space point ``x = (q, p)`` (shape ``[..., 2*dof]``) through the
per-coordinate affine map ``z = (x - mu) / sigma`` and represents ``H(x) = c * F(z)`` where the
network gives ``grad_z F``. By the chain rule

    grad_x H(x) = c * sigma^{-1} ⊙ (grad_z F)(z),
    Jacobian    = c * D · Hess F(z) · D,   D = diag(1 / sigma),

so the Jacobian of ∇H is symmetric exactly when the network's is: scaling changes units, never the
Hamiltonian structure. The scalar ``c`` (an energy scale) must be one number, not one per output,
because a per-output rescaling ``diag(s) · ∇F`` is no longer a gradient. A diagonal map also keeps
``q`` and ``p`` apart, so a separable model stays separable.

The statistics come from the training split only and live in buffers, so a checkpoint's
``state_dict`` carries them and a rebuilt model reproduces the same field.

**Feature maps.** The same argument holds for any smooth map ``φ`` of phase space: if the
network ``g`` is a gradient, ``x ↦ c·Jφ(x)ᵀ g(φ(x))`` is the gradient of ``c·F(φ(x))``, so the
field stays exactly Hamiltonian and still needs no derivative of the network (only ``Jφᵀ``,
written out analytically below). `FEATURES` holds the maps a model can use (hyperparameter
``features``): ``affine`` (the per-coordinate map above) and ``pairwise`` (for particle
systems: the positions enter only through the distances ``|x_i − x_j|`` of every pair of
bodies, each standardised, so the learned potential is invariant under translations and
rotations and conserves total and angular momentum exactly). Every map here acts on ``q``
and ``p`` separately, so separable models stay separable.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hamgrad.data import TrajectorySource, read_blocks
from hamgrad.errors import ConfigError, check_int, unknown_name

__all__ = [
    "FEATURES",
    "Normalizer",
    "PairwiseNormalizer",
    "build_features",
    "features_for_system",
    "phase_statistics",
    "streamed_phase_statistics",
]

#: Bytes of training data `Normalizer.fit` reads at once (whole trajectories per block); the
#: same blocks for a split in memory and one streamed from the file, so both fit the same
#: statistics.
NORMALIZATION_BLOCK_BYTES = 64 << 20

# Coordinates whose spread is below this fraction of the largest spread (or exactly zero) are
# left unscaled: dividing by a near-zero std would blow up inputs that never vary in training.
_MIN_RELATIVE_SCALE = 1e-8


class Normalizer(nn.Module):
    """Per-coordinate affine map of phase space plus one energy scale, held in buffers.

    Parameters
    ----------
    dof : int
        Number of position coordinates; the buffers have ``2 * dof`` entries ordered ``(q, p)``.

    Notes
    -----
    A fresh `Normalizer` is the identity (``mu = 0``, ``sigma = 1``, ``c = 1``); `set_statistics`
    (or loading a ``state_dict``) fills it in.
    """

    mean: Tensor
    scale: Tensor
    energy_scale: Tensor

    def __init__(self, dof: int) -> None:
        super().__init__()
        self.dof = dof
        #: Number of position features (the width of `encode_q`).
        self.q_features = dof
        self.register_buffer("mean", torch.zeros(2 * dof))
        self.register_buffer("scale", torch.ones(2 * dof))
        self.register_buffer("energy_scale", torch.ones(()))

    def set_statistics(self, mean: Tensor, scale: Tensor, energy_scale: float | Tensor) -> None:
        """Store ``mu`` (``[2*dof]``), ``sigma`` (``[2*dof]``, > 0) and the energy scale ``c``."""
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
            self.scale.copy_(torch.as_tensor(scale, dtype=self.scale.dtype))
            self.energy_scale.copy_(torch.as_tensor(energy_scale, dtype=self.energy_scale.dtype))

    def encode(self, q: Tensor, p: Tensor) -> Tensor:
        """Return ``z = ((q, p) - mu) / sigma``, shape ``[..., 2*dof]``."""
        return (torch.cat([q, p], dim=-1) - self.mean) / self.scale

    def encode_q(self, q: Tensor) -> Tensor:
        """Normalised positions ``[..., dof]`` (first half of `encode`)."""
        return (q - self.mean[: self.dof]) / self.scale[: self.dof]

    def encode_p(self, p: Tensor) -> Tensor:
        """Normalised momenta ``[..., dof]`` (second half of `encode`)."""
        return (p - self.mean[self.dof :]) / self.scale[self.dof :]

    def gradient_factor(self) -> Tensor:
        """``c / sigma`` (``[2*dof]``): multiply ``grad_z F`` by it to get ``grad_x H``."""
        return self.energy_scale / self.scale

    def fit(self, split: TrajectorySource, dt: float) -> None:
        """Set the statistics from a training split (trajectories ``[n_traj, n_t, dof]``).

        ``split`` is a `hamgrad.data.Split` or a lazy `hamgrad.data.SplitReader`, read in
        blocks of about `NORMALIZATION_BLOCK_BYTES` (`streamed_phase_statistics`).
        """
        names = ["q", "p"]
        if {"dq_dt", "dp_dt"} <= set(split.fields):
            names += ["dq_dt", "dp_dt"]
        mean, scale, energy_scale = streamed_phase_statistics(_blocks(split, names, self.dof), dt)
        self.set_statistics(torch.from_numpy(mean), torch.from_numpy(scale), energy_scale)

    def chain(self, q: Tensor, p: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        """``(∂H/∂q, ∂H/∂p)`` for ``H = c·F(encode(q, p))`` given ``g = ∇F`` at ``encode(q, p)``.

        ``g`` has shape ``[..., q_features + dof]``; the results ``[..., dof]`` each.
        """
        scaled = g * self.gradient_factor()
        return scaled[..., : self.dof], scaled[..., self.dof :]

    def chain_q(self, q: Tensor, g: Tensor) -> Tensor:
        """``∂(c·V(encode_q(q)))/∂q`` given ``g = ∇V`` ``[..., q_features]``; ``[..., dof]``."""
        return g * self.gradient_factor()[: self.dof]

    def chain_p(self, p: Tensor, g: Tensor) -> Tensor:
        """``∂(c·T(encode_p(p)))/∂p`` given ``g = ∇T`` ``[..., dof]``; ``[..., dof]``."""
        return g * self.gradient_factor()[self.dof :]


class PairwiseNormalizer(Normalizer):
    """Positions as standardised pair distances, momenta as in `Normalizer` (``features=pairwise``).

    For ``n`` bodies in ``space_dim`` dimensions (``q = (x_1, ..., x_n)``, ``dof = n·space_dim``)
    the position features are ``ρ_k = (|x_i − x_j| − m_k) / s_k`` for the ``P = n(n−1)/2``
    pairs ``k = (i, j)``, ``i < j``, with ``m_k, s_k`` the mean and spread of that distance over
    the training split. The momenta keep the affine map. The chain rule is a scatter-add:
    ``∂/∂x_i = Σ_k ±(g_k / s_k)(x_i − x_j)/|x_i − x_j|`` (``+`` for the first body of the pair).
    The distances are not defined at a collision (``x_i = x_j``), as the physics is not.

    Parameters
    ----------
    dof : int
        ``n · space_dim``.
    space_dim : int
        Spatial dimension of one body (1, 2, 3, ...); must divide ``dof`` with ``n >= 2``.
    """

    pair_mean: Tensor
    pair_scale: Tensor
    incidence: Tensor

    def __init__(self, dof: int, space_dim: int) -> None:
        super().__init__(dof)
        space_dim = check_int("space_dim", space_dim)
        if dof % space_dim or dof // space_dim < 2:
            raise ConfigError(
                f"features='pairwise' needs dof = bodies * space_dim with at least 2 bodies; "
                f"got dof={dof}, space_dim={space_dim}"
            )
        self.space_dim, self.bodies = space_dim, dof // space_dim
        pairs = list(itertools.combinations(range(self.bodies), 2))
        self.q_features = len(pairs)
        incidence = torch.zeros(len(pairs), self.bodies)
        for k, (i, j) in enumerate(pairs):
            incidence[k, i], incidence[k, j] = 1.0, -1.0
        self.register_buffer("incidence", incidence, persistent=False)
        self.register_buffer("pair_mean", torch.zeros(self.q_features))
        self.register_buffer("pair_scale", torch.ones(self.q_features))

    def _differences(self, q: Tensor) -> Tensor:
        """``x_i − x_j`` for every pair, ``[..., P, space_dim]``."""
        bodies = q.unflatten(-1, (self.bodies, self.space_dim))
        return self.incidence.to(q.dtype) @ bodies

    def encode_q(self, q: Tensor) -> Tensor:
        """Standardised pair distances ``[..., P]``."""
        distance = torch.linalg.vector_norm(self._differences(q), dim=-1)
        return (distance - self.pair_mean) / self.pair_scale

    def encode(self, q: Tensor, p: Tensor) -> Tensor:
        """``(encode_q(q), encode_p(p))``, shape ``[..., P + dof]``."""
        return torch.cat([self.encode_q(q), self.encode_p(p)], dim=-1)

    def chain_q(self, q: Tensor, g: Tensor) -> Tensor:
        diff = self._differences(q)
        distance = torch.linalg.vector_norm(diff, dim=-1)
        weight = g * (self.energy_scale / self.pair_scale) / distance  # [..., P]
        grad = self.incidence.to(q.dtype).t() @ (weight.unsqueeze(-1) * diff)  # [..., n, dim]
        return grad.flatten(-2)

    def chain(self, q: Tensor, p: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        return self.chain_q(q, g[..., : self.q_features]), self.chain_p(
            p, g[..., self.q_features :]
        )

    def fit(self, split: TrajectorySource, dt: float) -> None:
        """Affine statistics as `Normalizer.fit`, plus the mean and spread of each distance."""
        super().fit(split, dt)
        incidence = self.incidence.double()

        def distances() -> Iterator[np.ndarray]:
            for block in _blocks(split, ["q"], self.dof):
                q = torch.from_numpy(block["q"]).double().flatten(0, -2)
                bodies = q.unflatten(-1, (self.bodies, self.space_dim))
                yield torch.linalg.vector_norm(incidence @ bodies, dim=-1).numpy()

        mean, spread = _merged_moments(distances())
        spread = np.where(spread > _MIN_RELATIVE_SCALE * spread.max(initial=0.0), spread, 1.0)
        with torch.no_grad():
            self.pair_mean.copy_(torch.from_numpy(mean))
            self.pair_scale.copy_(torch.from_numpy(spread))


#: Feature maps by name (hyperparameter ``features`` of the Hamiltonian models):
#: name -> builder ``(dof, space_dim) -> Normalizer``.
FEATURES: dict[str, Any] = {
    "affine": lambda dof, space_dim: Normalizer(dof),
    "pairwise": PairwiseNormalizer,
}

# Systems whose data call for pairwise features by default, with their spatial dimension
# (registry names of `simulators`; ``nbody`` records its own ``dim`` in system_params).
_PARTICLE_SYSTEMS = {"kepler": 2, "two-body": 2, "three-body": 2, "nbody": 2}


def build_features(name: str, dof: int, space_dim: int = 0) -> Normalizer:
    """The feature map ``name`` of `FEATURES` for ``dof`` position coordinates.

    Raises
    ------
    ConfigError
        Unknown name (listing the valid ones) or a ``space_dim`` that does not fit ``dof``.
    """
    if name not in FEATURES:
        raise unknown_name("features", name, FEATURES)
    return FEATURES[name](dof, space_dim)


def features_for_system(
    system: str | None, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Default feature hyperparameters for data of ``system`` (a dataset's ``system``).

    Particle systems (``two-body``/``kepler``, ``three-body``, ``nbody``) get
    ``{"features": "pairwise", "space_dim": d}``; anything else, or no system,
    ``{"features": "affine"}``.
    """
    if system not in _PARTICLE_SYSTEMS:
        return {"features": "affine"}
    space_dim = int((params or {}).get("dim", _PARTICLE_SYSTEMS[system]))
    return {"features": "pairwise", "space_dim": space_dim}


def phase_statistics(
    q: np.ndarray,
    p: np.ndarray,
    dt: float,
    dq_dt: np.ndarray | None = None,
    dp_dt: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Training-set statistics for a `Normalizer`.

    Parameters
    ----------
    q, p : ndarray, shape ``[n_traj, n_t, dof]``
        Observed trajectories of the training split.
    dt : float
        Sampling interval (time units), used only when derivatives are absent.
    dq_dt, dp_dt : ndarray, shape ``[n_traj, n_t, dof]``, optional
        Stored time derivatives.

    Returns
    -------
    mean, scale : ndarray, shape ``[2*dof]``
        Mean and standard deviation of ``(q, p)`` (tiny or zero spreads replaced by 1).
    energy_scale : float
        ``c = mean_i sigma_i * rms(d x_conj(i) / dt)``: since ``dq/dt = ∂H/∂p``, ``H`` varies by
        about ``sigma_p * |dq/dt|`` across the data (and likewise ``sigma_q * |dp/dt|``), so with
        this ``c`` the network's own output is of order one. The rates are the stored
        derivatives, else central differences along time (noisy data inflates them a little;
        they only set a scale).
    """
    block = {"q": q, "p": p}
    if dq_dt is not None and dp_dt is not None:
        block.update(dq_dt=dq_dt, dp_dt=dp_dt)
    return streamed_phase_statistics([block], dt)


def streamed_phase_statistics(
    blocks: Iterable[Mapping[str, np.ndarray]], dt: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """`phase_statistics` of a split given as blocks of whole trajectories (bounded memory).

    Each block maps ``q``, ``p`` (and, in every block or none, ``dq_dt``, ``dp_dt``) to
    ``[k, n_t, dof]`` arrays. Means and variances are merged block by block
    (`_merged_moments`), so the result does not depend on the block size beyond rounding; one
    block gives exactly `phase_statistics`.
    """
    rate_sq, rate_n = np.zeros(0), 0

    def states() -> Iterator[np.ndarray]:
        nonlocal rate_sq, rate_n
        for block in blocks:
            x3 = np.concatenate([block["q"], block["p"]], axis=-1)
            yield x3.reshape(-1, x3.shape[-1])
            if "dq_dt" in block and "dp_dt" in block:
                deriv = np.concatenate([block["dq_dt"], block["dp_dt"]], axis=-1)
            elif x3.shape[1] >= 2:
                deriv = np.gradient(x3, dt, axis=1)
            else:
                continue  # a single time sample has no rate
            deriv_sq = (deriv.reshape(-1, deriv.shape[-1]) ** 2).sum(axis=0)
            rate_sq = deriv_sq if rate_n == 0 else rate_sq + deriv_sq
            rate_n += deriv.size // deriv.shape[-1]

    mean, scale = _merged_moments(states())
    floor = _MIN_RELATIVE_SCALE * max(float(scale.max(initial=0.0)), 1e-300)
    scale = np.where(scale > floor, scale, 1.0)
    rms = np.sqrt(rate_sq / rate_n) if rate_n else np.ones(len(mean))
    dof = len(mean) // 2
    # Pair each coordinate's spread with the rate of its conjugate: sigma_p with dq/dt, sigma_q
    # with dp/dt (both products estimate the energy scale).
    conj_rate = np.concatenate([rms[dof:], rms[:dof]])
    products = scale * conj_rate
    products = products[np.isfinite(products) & (products > 0)]
    energy_scale = float(products.mean()) if products.size else 1.0
    return mean, scale, energy_scale


def _blocks(split: TrajectorySource, names: list[str], dof: int) -> Iterator[dict[str, np.ndarray]]:
    """``split`` in blocks of whole trajectories of about `NORMALIZATION_BLOCK_BYTES`."""
    rows = max(1, NORMALIZATION_BLOCK_BYTES // (8 * split.n_t * dof * len(names)))
    return read_blocks(split, rows, names)


def _merged_moments(blocks: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation per column of rows given in blocks ``[n, k]``.

    Block moments are merged pairwise (Chan, Golub & LeVeque, "Algorithms for computing the
    sample variance", 1983), so the result does not depend on the block size beyond rounding.
    """
    n = 0
    mean = m2 = np.zeros(0)
    for x in blocks:
        n_b = x.shape[0]
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        if n == 0:
            mean, m2 = mean_b, m2_b
        else:
            delta = mean_b - mean
            mean = mean + delta * (n_b / (n + n_b))
            m2 = m2 + m2_b + delta**2 * (n * n_b / (n + n_b))
        n += n_b
    return mean, np.sqrt(m2 / n)
