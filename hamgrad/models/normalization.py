"""Input normalisation that keeps a learned vector field exactly Hamiltonian.

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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["Normalizer", "phase_statistics", "streamed_phase_statistics"]

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
    ``[k, n_t, dof]`` arrays. Means and variances are merged block by block (Chan, Golub &
    LeVeque, "Algorithms for computing the sample variance", 1983), so the result does not
    depend on the block size beyond rounding; one block gives exactly `phase_statistics`.
    """
    n = 0
    mean = m2 = rate_sq = np.zeros(0)
    rate_n = 0
    for block in blocks:
        q, p = block["q"], block["p"]
        x3 = np.concatenate([q, p], axis=-1)
        x = x3.reshape(-1, x3.shape[-1])
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
        if "dq_dt" in block and "dp_dt" in block:
            deriv = np.concatenate([block["dq_dt"], block["dp_dt"]], axis=-1)
        elif x3.shape[1] >= 2:
            deriv = np.gradient(x3, dt, axis=1)
        else:
            continue  # a single time sample has no rate
        deriv = deriv.reshape(-1, deriv.shape[-1])
        deriv_sq = (deriv**2).sum(axis=0)
        rate_sq = deriv_sq if rate_n == 0 else rate_sq + deriv_sq
        rate_n += deriv.shape[0]
    scale = np.sqrt(m2 / n)
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
