"""The document and hit types that flow through indexing and search."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Document(BaseModel):
    """A document to index: a string id, an optional title, text and metadata.

    ``image`` is the path of an image for image documents (resolved inside the configured
    roots by the image ingestion code).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=512)
    title: str = ""
    text: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    image: str | None = None

    def content_hash(self) -> str:
        """A stable hash of everything that is indexed, used to skip unchanged records."""
        payload = json.dumps(
            [self.title, self.text, self.metadata, self.image], sort_keys=True, default=str
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


class ChannelScore(BaseModel):
    """Where one retrieval channel placed a hit: its 1-based rank and raw score."""

    rank: int
    score: float


class Hit(BaseModel):
    """One search result with the per-channel explanation of how it got there."""

    id: str
    score: float
    rank: int
    channels: dict[str, ChannelScore] = Field(default_factory=dict)
    document: Document | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class SearchResult(BaseModel):
    query: str
    mode: str
    hits: list[Hit]
    degraded: bool = False
    failed_channels: dict[str, str] = Field(default_factory=dict)
    took_ms: float = 0.0
