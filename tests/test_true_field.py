"""Every analytic system in `simulators` is a HamiltonianField: the same `rollout` call that
integrates a learned model integrates the truth, and agrees with the independent reference
(exact flow or scipy DOP853), which never uses hamgrad's integrators."""

import numpy as np
import pytest
import torch

from hamgrad import HamiltonianField
from hamgrad.integrators import rollout
from simulators import SYSTEMS, get_system, reference_solution

DT, N_STEPS = 0.01, 100  # t = 1: a few periods of the fastest default system


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_rollout_of_true_system_matches_reference(name):
    system = get_system(name)
    assert isinstance(system, HamiltonianField)
    rng = np.random.default_rng(7)
    q0, p0 = map(np.stack, zip(*(system.sample_state(rng) for _ in range(3)), strict=True))
    # An 8th-order explicit method where H is separable, 6th-order Gauss collocation otherwise.
    method = "mclachlan8" if system.separable else "gauss6"
    traj = rollout(
        system,
        torch.from_numpy(q0),
        torch.from_numpy(p0),
        DT,
        N_STEPS,
        method=method,
        save_every=N_STEPS,
    )
    q_ref, p_ref, _ = reference_solution(system, q0, p0, np.array([0.0, DT * N_STEPS]))
    got = torch.cat((traj.q[..., -1, :], traj.p[..., -1, :]), -1).numpy()
    want = np.concatenate((q_ref[:, -1], p_ref[:, -1]), -1)
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 1e-8 * scale, (name, np.abs(got - want).max())
