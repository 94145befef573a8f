"""The document and hit types that flow through indexing and search."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


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


class PassageMatch(BaseModel):
    """Which passage of a long document the dense channel matched (documents longer than the
    encoder's window are embedded as overlapping passages): its number, how many the
    document has, and its ``[start, end)`` character offsets in ``Document.text`` (None
    when the document's text was not fetched)."""

    index: int
    count: int
    start: int | None = None
    end: int | None = None


class Hit(BaseModel):
    """One search result with the per-channel explanation of how it got there. ``passage``:
    for a document of several passages that the dense channel found, its best passage."""

    id: str
    score: float
    rank: int
    channels: dict[str, ChannelScore] = Field(default_factory=dict)
    document: Document | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    passage: PassageMatch | None = None


class SearchResult(BaseModel):
    query: str
    mode: str
    hits: list[Hit]
    degraded: bool = False
    failed_channels: dict[str, str] = Field(default_factory=dict)
    took_ms: float = 0.0
    #: the query's dense vector, kept by a search that leaves the page's passages to be
    #: completed after it (a collapsed search's window); not part of the API's answer
    _query_vector: Any = PrivateAttr(default=None)
