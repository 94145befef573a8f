"""Encoders turn text (and images) into L2-normalised float32 vectors."""

from semsearch.encoders.base import TextEncoder

__all__ = ["TextEncoder"]
