"""Compressed Vision: train video models directly on neural codes (JAX/Flax)."""
