"""Typed settings: the one place that reads the environment.

Every option can be set with an environment variable prefixed ``SEMSEARCH_`` and nested with
``__``, e.g. ``SEMSEARCH_VECTOR__FAISS__FACTORY=HNSW32`` or
``SEMSEARCH_LEXICAL__BACKEND=elasticsearch``. Backend-specific options live under the
backend's name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PassageSettings(_Section):
    """How documents longer than the encoder's window are embedded (the ``dense`` channel):
    the text is split by the encoder's tokenizer into overlapping passages of ``window``
    word pieces, each embedded with the title (``doc_template``), and a document's dense
    score aggregates its passages' scores. A document that fits in one window is one
    passage, embedded exactly as a whole document. ``window``, ``overlap`` and
    ``max_passages`` are recorded in the index (changing them needs a re-encode);
    ``aggregation`` and ``top_n`` apply at query time."""

    #: split long documents; off = one vector per document (the encoder truncates to its
    #: window, and indexing warns how many documents lost text). On SciFact, where 3,681 of
    #: 5,183 abstracts exceed MiniLM's 254 word pieces, passages lift dense nDCG@10 from
    #: 0.645 to 0.656 and hybrid from 0.731 to 0.735 for twice the texts to encode; on
    #: documents of 8 abstracts, dense from 0.148 to 0.619 (``bench_long_docs.py``)
    enabled: bool = True
    #: word pieces per passage, title included; None = the encoder's max length less its
    #: special tokens (254 for all-MiniLM-L6-v2)
    window: int | None = Field(None, ge=16, le=8192)
    #: word pieces consecutive passages share
    overlap: int = Field(64, ge=0, le=4096)
    #: at most this many passages per document (the rest of a longer text is not embedded)
    max_passages: int = Field(256, ge=1, le=100_000)
    #: a document's dense score: its best passage's ("max"), or the sum of its ``top_n``
    #: best passages' ("sum_top")
    aggregation: Literal["max", "sum_top"] = "max"
    top_n: int = Field(3, ge=1, le=1000)


class TextEncoderSettings(_Section):
    #: sentence-transformers model name or local path; None = bundled all-MiniLM-L6-v2
    model: str | None = None
    batch_size: int = Field(64, ge=1, le=4096)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: use fp16 weights on CUDA
    fp16: bool = True
    max_seq_length: int | None = Field(None, ge=8, le=8192)
    #: how a document becomes the text that is embedded
    doc_template: str = "{title} {text}"
    #: "torch" = sentence-transformers; "onnx" = the same model exported once to ONNX and run
    #: with ONNX Runtime on CPU. ``backend`` encodes documents in bulk (PyTorch is
    #: a little faster on long batches); ``query_backend`` encodes search queries, where ONNX
    #: Runtime is ~3x faster per short query on 2 cores. "auto" = onnx on CPU when onnxruntime
    #: is installed (falling back to torch if the model cannot be exported), torch otherwise.
    backend: Literal["torch", "onnx"] = "torch"
    query_backend: Literal["auto", "torch", "onnx"] = "auto"
    #: where ONNX exports are cached; None = $XDG_CACHE_HOME/semsearch/onnx (~/.cache/...)
    onnx_dir: Path | None = None
    #: ONNX Runtime intra-op threads; None = its default (one per physical core)
    onnx_threads: int | None = Field(None, ge=1)
    #: texts per ONNX Runtime call (``batch_size`` is PyTorch's), longest first. Small
    #: batches are cheaper per text on CPU: on 2 cores, 600 SciFact queries took 4.9 ms each
    #: in batches of 4 against 7.6 in batches of 64 and 6.8 one at a time, and 256 SciFact
    #: documents 47 ms each against 65 (docs/api.md)
    onnx_batch_size: int = Field(4, ge=1, le=4096)
    #: let ONNX Runtime's threads busy-wait between operators (its own default). Off: on a
    #: busy server the spinning is CPU taken from the searches (hybrid API load on 2 cores:
    #: 10.1 ms of CPU per request without, 13.3 ms with, the same throughput; docs/api.md)
    onnx_spinning: bool = False
    #: run the ONNX encoder (queries; documents too with backend "onnx") with its weights
    #: quantized to int8 per channel: 1.66x less CPU per query on these cores, at nDCG@10
    #: -0.002 dense / -0.003 hybrid on SciFact train with fp32 documents (docs/api.md). Off
    #: by default: it trades quality for speed
    onnx_int8: bool = False
    #: long documents as overlapping passages (see :class:`PassageSettings`)
    passages: PassageSettings = Field(default_factory=PassageSettings)


class EmbeddedLexicalSettings(_Section):
    """bm25s, an inverted index in sparse matrices (see README for why bm25s)."""

    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)
    stemmer: Literal["english", "none"] = "english"
    stopwords: Literal["en", "none"] = "en"


class ElasticsearchSettings(_Section):
    url: str = "http://127.0.0.1:9200"
    index: str = "semsearch"
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    request_timeout: float = Field(30.0, gt=0)
    #: analyzer of the title/text/all fields: a built-in one ("english" on a full
    #: distribution, "standard") or "semsearch_en", defined in the index settings: standard
    #: tokenizer + lowercase + English stopwords + hunspell stemming (``hunspell_locale``)
    analyzer: str = "english"
    #: dictionary of the hunspell stemmer in "semsearch_en" (config/hunspell/<locale>/ on the
    #: server); None = no stemming
    hunspell_locale: str | None = "en_US"
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)
    shards: int = Field(1, ge=1)
    replicas: int = Field(0, ge=0)
    #: documents per bulk request
    chunk_size: int = Field(500, ge=1)
    #: retries of a bulk chunk (429/502/503/504), with exponential backoff from ``initial_backoff``
    max_retries: int = Field(5, ge=0)
    initial_backoff: float = Field(1.0, gt=0)
    #: HNSW parameters of the dense_vector fields (vector backend "elasticsearch")
    hnsw_m: int = Field(16, ge=2)
    hnsw_ef_construction: int = Field(100, ge=2)
    #: kNN candidates per shard = max(k, num_candidates_factor * k, min_num_candidates), at
    #: most 10,000 (Elasticsearch's limit)
    num_candidates_factor: float = Field(4.0, ge=1)
    #: the floor: a small page (k = 10) still explores this many candidates per shard.
    #: Chosen on SciFact train queries at 100k vectors per shard (bench_es_recall.py, merged
    #: index): recall@10 0.847 with no floor (40), 0.900 at 100, 0.912 at 200, for ~3 ms of
    #: server time; 200 is the smallest floor within 0.01 of the largest tried (docs/scaling.md)
    min_num_candidates: int = Field(200, ge=1, le=10_000)

    def num_candidates(self, k: int) -> int:
        """kNN candidates per shard for the top ``k``."""
        return min(10_000, max(k, self.min_num_candidates, int(self.num_candidates_factor * k)))


class StoreElasticsearchSettings(ElasticsearchSettings):
    """The store backend "elasticsearch": one index (behind the alias ``index``) holds every
    document, its text embedding and image hashes. Connection, analyzer, BM25, bulk and
    HNSW options are those of :class:`ElasticsearchSettings`; ``url`` may list several
    nodes separated by commas."""

    index: str = "semsearch-store"
    #: production default: one replica of every shard (yellow on a single node; use 0 there)
    replicas: int = Field(1, ge=0)
    #: the index's refresh_interval ("1s", "30s", "-1" = only on demand / wait_for)
    refresh_interval: str = "1s"
    #: dense_vector index_options type: int8_hnsw (default, 4x smaller), bbq_hnsw (binary
    #: quantised, 32x smaller; needs >= 64 dims), hnsw (float), flat / int8_flat (exact)
    vector_index: Literal["int8_hnsw", "bbq_hnsw", "hnsw", "int8_flat", "flat"] = "int8_hnsw"
    #: where hybrid results are fused: "server" = ES retrievers (rrf, linear with minmax),
    #: "client" = one _msearch fused by semsearch.search.fusion (keeps per-channel
    #: explanations and z-score), "auto" = server when the server has the retriever and the
    #: request's fusion can be expressed there, else client
    fusion: Literal["auto", "server", "client"] = "auto"
    #: threads sending bulk chunks in parallel (each chunk retried on 429/5xx)
    bulk_threads: int = Field(2, ge=1, le=64)
    #: keep-alive of the point in time that deep pages (search_after) read
    pit_keep_alive: str = "2m"
    #: seconds a write refused by a rebuild's write block is retried (the block lasts while
    #: the rebuild catches up with writes made during its copy; then the alias moves and
    #: the write lands in the new index); past this it is reported as rejected
    block_wait: float = Field(120.0, ge=0)
    #: offset + k beyond this is paged with search_after over a point in time
    max_result_window: int = Field(10_000, ge=1)
    #: seconds the replicas' manifest lock (index ``semsearch-locks``) is held before another
    #: replica may take it over (a holder that died), and seconds a replica waits for it
    lock_ttl: float = Field(120.0, gt=0)
    lock_wait: float = Field(150.0, ge=0)
    #: seconds a replica keeps the manifest (``_meta``) it read before reading it again: the
    #: search defaults ``semsearch adapt`` records, and channels another replica declared,
    #: reach every replica within this without a restart
    manifest_refresh: float = Field(5.0, ge=0)
    #: where a replica keeps the text encoders ``semsearch adapt`` published in the cluster
    #: (index ``semsearch-models``), fetched once; None = $XDG_CACHE_HOME/semsearch/models
    model_cache: Path | None = None
    #: the index holding those encoders (content-addressed: every alias of a cluster may share it)
    models_index: str = "semsearch-models"


class StoreSettings(_Section):
    """Where documents live: "local" = the index directory (SQLite store + derived indexes),
    "elasticsearch" = one Elasticsearch index is the system of record (no local state)."""

    backend: Literal["local", "elasticsearch"] = "local"
    elasticsearch: StoreElasticsearchSettings = Field(default_factory=StoreElasticsearchSettings)


class LexicalSettings(_Section):
    backend: Literal["embedded", "elasticsearch"] = "embedded"
    #: per-field BM25 weights; the score is the weighted sum of the fields' scores. Fields:
    #: ``all`` (title and text as one field, the default), ``title``, ``text``
    boosts: dict[str, float] = Field(default_factory=lambda: {"all": 1.0})
    embedded: EmbeddedLexicalSettings = Field(default_factory=EmbeddedLexicalSettings)
    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)

    @field_validator("boosts")
    @classmethod
    def _check_boosts(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {f for f in v if f not in ("all", "title", "text")}
        if bad:
            raise ValueError(f"unknown boost field(s) {sorted(bad)}; fields are 'all', 'title', 'text'")
        if any(w < 0 for w in v.values()) or not any(w > 0 for w in v.values()):
            raise ValueError(f"boosts must be >= 0 with at least one > 0, got {v}")
        return v


class FaissSettings(_Section):
    #: FAISS index factory string: "Flat", "HNSW32", "IVF256,Flat", "IVF256,PQ16", ...
    factory: str = "Flat"
    #: IVF probes at query time
    nprobe: int = Field(16, ge=1)
    #: HNSW efSearch at query time
    ef_search: int = Field(128, ge=1)
    #: "auto" uses the GPU when faiss sees one
    gpu: Literal["auto", "never", "always"] = "auto"
    #: segments with fewer vectors than this are searched exactly (one matrix product) and
    #: get no ANN structure: a refresh of a few documents builds no graph; merges build it
    exact_below: int = Field(20_000, ge=0)


class VectorSettings(_Section):
    backend: Literal["faiss", "elasticsearch"] = "faiss"
    faiss: FaissSettings = Field(default_factory=FaissSettings)


class FusionSettings(_Section):
    method: Literal["rrf", "convex"] = "convex"
    rrf_k: int = Field(60, ge=1)
    #: z-score beat min-max on SciFact *train* at the default weights and depth (nDCG@10
    #: 0.733 vs 0.731 with the default lexical `all` field; README "Quality")
    normalization: Literal["minmax", "zscore"] = "zscore"
    #: channel weights; channels not named get weight 1
    weights: dict[str, float] = Field(default_factory=lambda: {"lexical": 0.5, "dense": 0.5})
    #: how many candidates each channel contributes before fusion
    depth: int = Field(100, ge=1, le=10000)


class SearchSettings(_Section):
    default_mode: Literal["lexical", "dense", "hybrid", "image"] = "hybrid"
    #: when a channel fails mid-search: raise, or answer from the other channels and flag the
    #: result as degraded
    on_channel_failure: Literal["fail", "degrade"] = "fail"
    max_k: int = Field(1000, ge=1)
    #: largest metadata filter: values plus clauses (see semsearch.filters)
    max_filter_values: int = Field(1024, ge=1)
    #: passage offsets of this many recently returned long documents kept per searcher
    #: (0: none), so that a popular document is not tokenized again for every hit
    passage_cut_cache: int = Field(10_000, ge=0)


class IndexingSettings(_Section):
    batch_size: int = Field(512, ge=1)
    on_duplicate: Literal["reject", "last"] = "reject"
    max_text_chars: int = Field(1_000_000, ge=1)
    #: seconds between the background refreshes that make acknowledged writes searchable
    #: (like Elasticsearch's ``refresh_interval``); writes may also ask to wait for one
    refresh_interval: float = Field(1.0, ge=0, le=3600)
    #: seconds at least between two refreshes while a write waits to be searchable
    #: (``wait_for``): it gets its refresh this soon after the last one instead of at the
    #: next ``refresh_interval`` tick (Lucene's ``targetMinStaleSec``); writes that do not
    #: wait keep the interval's schedule
    refresh_min_interval: float = Field(0.1, ge=0, le=3600)
    #: a refresh writes one segment per this many changed documents (a bulk load becomes
    #: several segments that background merges fold together)
    segment_docs: int = Field(50_000, ge=1)
    #: tiered merge policy: this many segments of similar size (within a factor of it) merge
    merge_factor: int = Field(10, ge=2, le=100)
    #: run merges in a background thread of a writable Collection
    background_merges: bool = True
    #: ``semsearch index`` (the bulk pipeline) runs the merge policy's merges before it
    #: returns, so a bulk load is searched as a few large segments (1M documents: 2 of 512k
    #: rather than 20 of 51k) even by processes that never merge (read-only opens)
    merge_after_load: bool = True


class ApiSettings(_Section):
    """The REST API server (``semsearch serve``)."""

    #: also require the API key on read endpoints (search, documents, stats)
    auth_reads: bool = False
    #: largest k (and offset + k) a search may ask for
    max_k: int = Field(100, ge=1, le=10000)
    #: largest request body, in bytes (JSON and uploads); larger bodies get 413
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    #: largest uploaded file, in bytes (image search)
    max_upload_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    #: largest uploaded image, in pixels (width x height)
    max_image_pixels: int = Field(40_000_000, ge=1)
    #: most documents in one POST /v1/documents
    max_batch_docs: int = Field(1000, ge=1)
    #: longest query, in characters
    max_query_chars: int = Field(2000, ge=1)
    #: concurrent searches with the same options that arrive within this window are run as
    #: one batch (one encoder call); 0 turns batching off
    batch_window_ms: float = Field(2.0, ge=0, le=1000)
    max_batch_queries: int = Field(32, ge=1)
    #: batches with the same options that run at once; searches that arrive meanwhile wait
    #: and go together when one finishes (search_api/batching.py). More suits a backend that
    #: waits on the network rather than the CPU (the Elasticsearch store)
    max_batches_in_flight: int = Field(1, ge=1, le=1024)
    #: with several worker processes (``serve --workers N``), a process that holds more than
    #: its share of the active keep-alive connections (plus one) closes the surplus after
    #: their next response, so that clients reconnect to the less busy processes
    #: (search_api/balance.py)
    balance_connections: bool = True
    #: numpy's BLAS threads in a server process (None: numpy's default, one per core). A
    #: search's exact vector scan is one small matrix product that OpenBLAS splits over its
    #: threads, which then spin: with 1, a hybrid request on the SciFact index took 14-16 ms
    #: of CPU instead of 23-25 (docs/api.md). ONNX Runtime and FAISS keep their own threads
    blas_threads: int | None = Field(1, ge=1)
    #: dense cosine similarity at or above which two hits count as near-duplicates when a
    #: search asks to collapse them
    duplicate_threshold: float = Field(0.95, gt=0, le=1)
    #: characters of document text around the matched terms in a hit's snippet
    snippet_chars: int = Field(240, ge=20, le=5000)
    #: longest side of the thumbnails GET /v1/images/{id} serves
    thumbnail_px: int = Field(256, ge=16, le=2048)

    # -- guard rails: enforced whatever a request asks; a request over one gets a 400 that
    # names the setting (e.g. "depth must be <= 1000 (api.max_depth)")
    #: largest offset (pagination depth) of a search
    max_offset: int = Field(1000, ge=0, le=100000)
    #: largest candidates-per-channel ``depth`` a search may ask for
    max_depth: int = Field(1000, ge=1, le=100000)
    #: largest ``rerank_depth`` (cross-encoder pairs per query)
    max_rerank_depth: int = Field(100, ge=1, le=10000)
    #: largest metadata filter: fields plus the values of every list, counted together
    max_filter_terms: int = Field(64, ge=1, le=100000)
    #: snippets are cut from the first this-many characters of a hit's text (a 1M-character
    #: document costs no more than this)
    max_snippet_source_chars: int = Field(20000, ge=100, le=10_000_000)
    #: a search that has not finished after this many seconds is answered 503 (its worker
    #: thread finishes in the background); 0 = no deadline
    request_timeout_s: float = Field(10.0, ge=0, le=3600)
    #: longest a write with ``wait`` waits to become searchable before answering (with
    #: ``searchable: false``: ask GET /v1/writes/{seq} or POST /v1/refresh)
    max_wait_s: float = Field(5.0, ge=0, le=600)
    #: per-client token bucket: requests per second refilled, and the bucket size (burst);
    #: the client is the API key when one is given, else the peer address. 0 = no limit (the
    #: default: behind a proxy every client has the proxy's address)
    rate_limit_per_s: float = Field(0.0, ge=0)
    rate_limit_burst: int = Field(50, ge=1)
    #: POST /v1/duplicates (a scan of every image hash) needs the API key
    duplicates_need_key: bool = True
    #: finished background jobs kept for GET /v1/jobs/{id}
    max_jobs: int = Field(100, ge=1, le=100000)


class LogSettings(_Section):
    """Logging of the entry points (CLI and server); library code only logs."""

    #: semsearch's own log level
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    #: "text" lines or one JSON object per line ("json"; search lines carry the request id)
    format: Literal["text", "json"] = "text"
    #: other libraries' records and Python warnings are shown from this level (all of them
    #: when ``level`` is DEBUG)
    libraries: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "ERROR"


class ImageSettings(_Section):
    """Image ingestion and perceptual hashing."""

    #: image paths must resolve inside one of these directories (no traversal outside);
    #: empty = the directory of the input file (or the image tree's root) only
    roots: list[Path] = Field(default_factory=list)
    #: decompression-bomb guard: images with more pixels are rejected before decoding
    max_pixels: int = Field(89_478_485, ge=1)
    #: perceptual hashes stored as binary channels (64 bits each)
    hashes: list[Literal["phash", "dhash"]] = Field(default_factory=lambda: ["phash", "dhash"])
    #: also store the pHash of the horizontally mirrored image (flip-robust dedup)
    mirrored: bool = True
    #: decode JPEGs at a reduced scale (libjpeg DCT scaling) before hashing and CLIP
    #: preprocessing: >= 256 px a side in colour with CLIP, the luma channel at >= 64 px a
    #: side for hashes alone. Faster (1.7x on thumbnails, more on large photos), but hashes
    #: are then no longer bit-identical to ImageHash's (measured in docs/images.md)
    fast_decode: bool = False
    #: "auto": plain JPEGs (YCbCr or grey) are decoded by libjpeg-turbo through simplejpeg,
    #: the same pixels as Pillow's with less Python and the GIL released (1.4x the hash-only
    #: throughput with fast_decode, 1.1x without); "pillow": every file through Pillow
    jpeg_decoder: Literal["auto", "pillow"] = "auto"
    #: near-duplicate threshold (pHash Hamming distance, inclusive) for dedup and collapse
    max_distance: int = Field(10, ge=0, le=64)
    #: threads that decode and resize images off the main thread
    workers: int = Field(2, ge=1, le=64)
    #: binary index: "flat" (exact, IndexBinaryFlat) or "multihash" (IndexBinaryMultiHash,
    #: for large collections; exact for radii below its bucket limit)
    binary_index: Literal["flat", "multihash"] = "flat"
    #: "auto" uses a GPU binary index when faiss sees a GPU
    gpu: Literal["auto", "never"] = "auto"
    extensions: list[str] = Field(
        default_factory=lambda: [".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"]
    )


class ClipSettings(_Section):
    """CLIP via open_clip: an architecture plus weights (a pretrained tag or a local file)."""

    #: open_clip architecture name, e.g. "ViT-B-32"
    architecture: str = "ViT-B-32"
    #: None = random weights (tests only), a tag like "laion2b_s34b_b79k" (downloads where
    #: there is internet) or a local path to a .pt/.bin/.safetensors weights file
    pretrained: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(32, ge=1, le=4096)


class RerankSettings(_Section):
    """Cross-encoder reranking of the fused top-N (see docs/rerank.md)."""

    #: rerank every search by default (a request can override it)
    enabled: bool = False
    #: a trained cross-encoder directory (``semsearch train-reranker --out``) or hub name;
    #: None = the bundled MiniLM backbone with an untrained head (only useful for training)
    model: str | None = None
    #: how many fused hits are rescored
    depth: int = Field(20, ge=1, le=1000)
    #: final score = blend * normalised fusion score + (1 - blend) * normalised rerank score;
    #: 0.6 was chosen on held-out SciFact *train* queries for the two-stage MiniLM reranker
    #: trained with the CLI defaults (docs/rerank.md); 0 = the cross-encoder alone decides
    #: the order of the top N
    blend: float = Field(0.6, ge=0, le=1)
    #: tokens of query + document; the query is never truncated, the document is
    max_length: int = Field(128, ge=16, le=4096)
    #: a query too long to leave 16 document tokens within max_length: "extend" scores that
    #: query's pairs at its own length (up to the model's limit; slower, never an error),
    #: "error" refuses it (BadInput)
    long_queries: Literal["extend", "error"] = "extend"
    #: document fields in order, joined with ``separator`` (None = the tokenizer's [SEP])
    fields: list[Literal["title", "text"]] = Field(default_factory=lambda: ["title", "text"])
    separator: str | None = None
    batch_size: int = Field(32, ge=1, le=4096)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: on CUDA: weights in half precision
    precision: Literal["fp32", "fp16", "bf16"] = "fp16"
    #: "onnx" runs on onnxruntime (CPU) from ``<model>/onnx/<onnx_file>`` (None =
    #: model_int8.onnx), exported on first use; "auto" = onnx for a trained model directory on
    #: CPU (falling back to torch if it cannot be exported), torch on CUDA or for hub names
    backend: Literal["auto", "torch", "onnx"] = "auto"
    onnx_file: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SEMSEARCH_", env_nested_delimiter="__", extra="forbid"
    )

    store: StoreSettings = Field(default_factory=StoreSettings)
    text_encoder: TextEncoderSettings = Field(default_factory=TextEncoderSettings)
    lexical: LexicalSettings = Field(default_factory=LexicalSettings)
    vector: VectorSettings = Field(default_factory=VectorSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    indexing: IndexingSettings = Field(default_factory=IndexingSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    clip: ClipSettings = Field(default_factory=ClipSettings)
    rerank: RerankSettings = Field(default_factory=RerankSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    no_progress: bool = False
    #: write API key for the REST API
    api_key: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest priority first: constructor arguments, the environment, then the settings
        file named by ``SEMSEARCH_CONFIG`` (CLI: ``--config``), if any."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get(CONFIG_ENV)
        if path:
            sources.append(config_file_source(settings_cls, Path(path)))
        return tuple(sources)


#: the environment variable that names a settings file (TOML or .env)
CONFIG_ENV = "SEMSEARCH_CONFIG"


def config_file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    """A TOML file (``[api]`` tables and keys named like the settings: ``max_k = 50``) or a
    ``.env`` file (the environment variables' names: ``SEMSEARCH_API__MAX_K=50``)."""
    if not path.is_file():
        raise ValueError(f"settings file {path} (from {CONFIG_ENV} or --config) does not exist")
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            with open(path, "rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"settings file {path} is not valid TOML: {e}") from e
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    return _PrefixedDotEnv(settings_cls, env_file=path)


class _PrefixedDotEnv(DotEnvSettingsSource):
    """A .env file may hold other programs' variables too: only ``SEMSEARCH_*`` ones are
    read (an unknown ``SEMSEARCH_*`` name is still an error)."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        return {k: v for k, v in data.items() if k in self.settings_cls.model_fields}


def load(config: Path | str | None = None, **kwargs: Any) -> Settings:
    """Settings from the environment and, when given (or named by ``SEMSEARCH_CONFIG``), a
    settings file; environment variables override the file."""
    if config is None:
        return Settings(**kwargs)
    old = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(config)
    try:
        return Settings(**kwargs)
    finally:
        if old is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = old
