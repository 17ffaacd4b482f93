"""Optimistic concurrency control for Django models."""

__version__ = "0.1.0"
