"""Batched molecular dynamics: state, integrators, observers, trajectory writers."""
