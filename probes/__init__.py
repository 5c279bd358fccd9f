"""Probes of trained networks that the lab measures and the app demonstrates: corruptions and batch coupling."""
