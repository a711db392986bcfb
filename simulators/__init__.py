"""Analytic Hamiltonian systems with exact or near-machine-precision reference trajectories."""
