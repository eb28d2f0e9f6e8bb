"""Distributed engines for corpus detection (optional extras)."""
