from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest-neighbour search by inner product over L2-normalised float32 vectors
    (i.e. cosine similarity), keyed by string document ids."""

    backend: str

    @property
    def dim(self) -> int: ...

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors, replacing any stored under the same ids."""
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ids; returns how many existed."""
        ...

    def search(
        self, queries: np.ndarray, k: int, *, allowed: Collection[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        """For each query row, up to ``k`` ``(id, score)`` pairs, best first. ``allowed``
        restricts results to those ids (metadata filters)."""
        ...

    def count(self) -> int: ...

    def __contains__(self, doc_id: object) -> bool: ...

    def save(self, path: Path) -> None: ...

    def info(self) -> dict[str, Any]: ...
