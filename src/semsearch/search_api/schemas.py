"""Request and response models of the REST API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from semsearch.documents import ChannelScore, PassageMatch


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=10000, description="the text query")
    mode: Literal["lexical", "dense", "hybrid", "image"] | None = Field(
        None, description="retrieval mode; default from the server settings; 'image' finds images "
        "by text through the CLIP text tower")
    k: int = Field(10, ge=1, le=10000, description="hits per page (at most the server's max_k)")
    offset: int = Field(0, ge=0, le=10000, description="hits to skip (pagination within the fused list)")
    filters: dict[str, Any] | None = Field(
        None, description='metadata filter in semsearch\'s filter language (equality, any-of lists, '
        'ranges gt/gte/lt/lte over numbers and ISO dates, exists, in, ne, not/and/or), e.g. '
        '{"topic": "energy", "year": {"gte": 2020}, "not": {"lang": "de"}}')
    fusion: Literal["rrf", "convex"] | None = None
    weights: dict[str, float] | None = Field(None, description="channel weights for fusion, e.g. {\"lexical\": 0.3, \"dense\": 0.7}")
    rrf_k: int | None = Field(None, ge=1, le=100000)
    normalization: Literal["minmax", "zscore"] | None = None
    depth: int | None = Field(None, ge=1, le=10000, description="candidates per channel before fusion")
    rerank: bool | None = Field(None, description="rerank the fused candidates with the cross-encoder (when this build has one)")
    rerank_depth: int | None = Field(None, ge=1, le=1000)
    explain: bool = Field(True, description="include each hit's per-channel rank and score")
    collapse: bool = Field(False, description=(
        "collapse near-duplicate hits into the best-ranked one (image hits by pHash, text by dense cosine)"))
    snippets: bool = Field(True, description="include a snippet of the text with the query's words marked")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query is empty")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None and any(not (w >= 0) for w in v.values()):  # also rejects NaN
            raise ValueError("weights must be >= 0")
        return v


class Snippet(BaseModel):
    text: str
    highlights: list[tuple[int, int]] = Field(description="[start, end) offsets of matched words in text")
    truncated_start: bool = False
    truncated_end: bool = False


class HitOut(BaseModel):
    id: str
    rank: int
    score: float
    channels: dict[str, ChannelScore] | None = Field(None, description="per-channel rank and raw score (explain)")
    title: str = ""
    title_highlights: list[tuple[int, int]] = Field(default_factory=list)
    snippet: Snippet | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    image: str | None = None
    image_url: str | None = Field(None, description="thumbnail of the hit's image on this server")
    duplicates: list[str] = Field(default_factory=list, description="ids collapsed into this hit")
    passage: PassageMatch | None = Field(
        None, description="the passage of a long document the dense channel matched (index, count, "
        "[start, end) character offsets in its text); the snippet is cut from it")


class SearchResponse(BaseModel):
    query: str
    mode: str
    k: int
    offset: int
    hits: list[HitOut]
    degraded: bool = False
    failed_channels: dict[str, str] = Field(default_factory=dict)
    took_ms: float


class ImageHitOut(BaseModel):
    id: str
    rank: int
    score: float = Field(description="fused score; with one hash channel, minus the Hamming distance")
    channels: dict[str, ChannelScore] = Field(
        default_factory=dict, description="per-channel rank and raw score (cosine, or Hamming distance)")
    hamming: dict[str, int] = Field(default_factory=dict, description="Hamming distance per hash channel")
    rule: dict[str, str] = Field(
        default_factory=dict, description="per hash channel: 'direct' or 'mirrored' (matched the flipped query)")
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    image: str | None = None
    image_url: str | None = Field(None, description="thumbnail of the hit's image on this server")


class ImageSearchResponse(BaseModel):
    filename: str
    width: int
    height: int
    channels: list[str]
    k: int
    hits: list[ImageHitOut]
    took_ms: float


class DuplicatesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_distance: int | None = Field(
        None, ge=0, le=64, description="largest pHash Hamming distance of a near-duplicate pair "
        "(default: the server's images.max_distance)")
    mirrored: bool = Field(True, description="also pair horizontally flipped copies")


class DuplicatePair(BaseModel):
    a: str
    b: str
    distance: int
    rule: Literal["direct", "mirrored"]


class DuplicatesResponse(BaseModel):
    groups: list[list[str]] = Field(description="connected components of the near-duplicate pairs, largest first")
    pairs: list[DuplicatePair]
    max_distance: int
    images: int
    seconds: float
    notes: list[str] = Field(default_factory=list)


class DocumentOut(BaseModel):
    id: str
    title: str
    text: str
    metadata: dict[str, Any]
    image: str | None = None


class UpsertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[dict[str, Any]] = Field(
        min_length=1, description="records as in a JSONL file: id or _id, title, text, metadata, "
        "image (a path inside the server's images.roots; never a URL)")
    wait: bool = Field(True, description="answer once the documents are searchable, or after the "
                       "server's api.max_wait_s (a few seconds) with searchable=false; false = answer "
                       "once they are durable")


class WriteResponse(BaseModel):
    ids: list[str]
    seq: int = Field(description="change sequence number of the write")
    durable: bool = True
    searchable: bool = Field(description="whether a sync had applied the write when the server answered")


class RefreshResponse(BaseModel):
    searchable_seq: int = Field(description="every write with a seq up to this one is searchable")
    changed: int = Field(description="changes the refresh applied")
    seconds: float


class RejectedWrite(BaseModel):
    id: str
    reason: str


class WriteStatus(BaseModel):
    seq: int
    searchable: bool
    searchable_seq: int
    #: documents of this write a backend refused while making them searchable (their
    #: previous version, if any, stays searchable)
    rejected: list[RejectedWrite] = []


class JobAccepted(BaseModel):
    job_id: str
    status: str
    status_url: str = Field(description="GET it for the job's status and result")


class RecordProblem(BaseModel):
    index: int
    id: str | None = None
    reason: str


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[str, Any]


class ErrorBody(BaseModel):
    status: int
    type: str
    message: str
    request_id: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error codes a route can answer with."""
    return {code: {"model": ErrorOut} for code in codes}
