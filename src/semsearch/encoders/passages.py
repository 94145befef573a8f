"""Long documents as overlapping passages of the text encoder's window.

A document whose text fits in one window (``window`` word pieces, the title included) is one
passage and is embedded exactly as before: ``doc_template`` over its title and whole text. A
longer text is cut, by the encoder's own tokenizer, into passages of at most ``window`` word
pieces less the title's, ``overlap`` pieces shared by neighbours; each passage is embedded
with the title (``doc_template`` over the title and the passage's text). Passages are
character spans of ``Document.text``, so a hit can say where its best passage is and a
snippet can be cut from it.

The cut is a pure function of the text, the tokenizer and the recorded :class:`PassagePlan`.
The write path stores each long document's spans beside its vectors (:class:`PassageVectors`
carries them; the document store keeps them, :func:`pack_spans`), and the search path reads
them there. For documents written before spans were stored, it recomputes them (and keeps
the latest: :class:`SplitCache`).
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from semsearch.config import PassageSettings
from semsearch.documents import Document

_WORD = re.compile(r"\S+")
#: the window of an encoder that does not say its own (no tokenizer): words
DEFAULT_WINDOW = 256


@dataclass(frozen=True)
class PassagePlan:
    """What the index records (``ChannelSpec.passages``): a change needs a re-encode."""

    window: int
    overlap: int
    max_passages: int

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, rec: dict[str, Any] | None) -> PassagePlan | None:
        return None if not rec else cls(int(rec["window"]), int(rec["overlap"]), int(rec["max_passages"]))


def plan_for(settings: PassageSettings, encoder: Any) -> PassagePlan | None:
    """The plan ``settings`` ask for with ``encoder`` (None: one vector per document)."""
    if not settings.enabled:
        return None
    window = settings.window
    if window is None:
        window = window_of(encoder) or DEFAULT_WINDOW
    return PassagePlan(window=window, overlap=settings.overlap, max_passages=settings.max_passages)


def window_of(encoder: Any) -> int | None:
    """Word pieces the encoder embeds per text, special tokens excluded (None: not known)."""
    max_len = getattr(encoder, "max_length", None)
    return int(max_len) - int(getattr(encoder, "special_tokens", 0)) if max_len else None


def count_truncated(encoder: Any, texts: Sequence[str]) -> int:
    """How many of ``texts`` are longer than the encoder's window (0 when it is not known)."""
    window = window_of(encoder)
    if window is None or getattr(encoder, "token_spans", None) is None:
        return 0
    return sum(len(spans) > window for spans in token_spans(encoder, texts))


def explicit(settings: PassageSettings) -> bool:
    """Whether the user set the recorded options (else an index's recorded plan is used)."""
    return bool(settings.model_fields_set & {"enabled", "window", "overlap", "max_passages"})


def token_spans(encoder: Any, texts: Sequence[str]) -> list[np.ndarray]:
    """The encoder's word pieces as character spans; whitespace words for an encoder
    without a tokenizer."""
    fn = getattr(encoder, "token_spans", None)
    if fn is not None:
        return fn(list(texts))
    return [np.array([m.span() for m in _WORD.finditer(t)], dtype=np.int64).reshape(-1, 2) for t in texts]


def split(encoder: Any, template: str, docs: Sequence[Document], plan: PassagePlan) -> list[list[tuple[int, int]]]:
    """Per document, the ``[start, end)`` character spans of its passages in ``text``:
    ``[(0, len(text))]`` when it fits in one window."""
    prefixes = token_spans(encoder, [template.format(title=d.title, text="").strip() for d in docs])
    pieces = token_spans(encoder, [d.text for d in docs])
    out = []
    for d, pre, spans in zip(docs, prefixes, pieces):
        budget = max(plan.window - len(pre), 8)
        n = len(spans)
        if n <= budget:
            out.append([(0, len(d.text))])
            continue
        stride = budget - min(plan.overlap, budget // 2)
        cuts = []
        for start in range(0, n, stride):
            end = min(start + budget, n)
            cuts.append((int(spans[start, 0]), int(spans[end - 1, 1])))
            if end == n or len(cuts) == plan.max_passages:
                break
        out.append(cuts)
    return out


class PassageVectors(np.ndarray):
    """A document's passage vectors, ``(n_passages, dim)`` float32, carrying the
    ``[start, end)`` character spans they embed (``cuts``) so that the write path can store
    them with the vectors. An array derived from one (a slice, a copy) has no cuts."""

    cuts: tuple[tuple[int, int], ...] | None = None


def with_cuts(mat: np.ndarray, cuts: Sequence[tuple[int, int]]) -> PassageVectors:
    out = np.ascontiguousarray(mat, dtype=np.float32).view(PassageVectors)
    out.cuts = tuple((int(a), int(b)) for a, b in cuts)
    return out


def pack_spans(text: str, cuts: Sequence[tuple[int, int]]) -> bytes:
    """The stored form of a document's passage spans: a header row (the text's length and
    CRC-32, so that spans read beside another version of the text are not used) then one
    ``(start, end)`` row per passage, int64."""
    return np.array([(len(text), zlib.crc32(text.encode("utf-8"))), *cuts], dtype=np.int64).tobytes()


def unpack_spans(blob: bytes, text: str) -> np.ndarray | None:
    """The ``(n_passages, 2)`` spans of :func:`pack_spans` if they were cut from ``text``."""
    rows = np.frombuffer(blob, dtype=np.int64).reshape(-1, 2)
    if len(rows) < 2 or int(rows[0, 0]) != len(text) or int(rows[0, 1]) != zlib.crc32(text.encode("utf-8")):
        return None
    return rows[1:]


class SplitCache:
    """The cuts (:func:`split`) of the documents searches returned lately, by content: a
    hit's passage offsets are recomputed with the encoder's tokenizer (about 0.6 ms per
    abstract on these cores, most of a hybrid search's cost beyond the query encoding), and
    popular documents come back again and again. Bounded (oldest out first); a document
    whose title or text changed misses (the key holds their hashes), as does another
    encoder or plan; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._cuts: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def split(self, encoder: Any, template: str, docs: Sequence[Document],
              plan: PassagePlan) -> list[list[tuple[int, int]]]:
        if self.size <= 0:
            return split(encoder, template, docs, plan)
        tokenizer = getattr(encoder, "name", type(encoder).__name__)
        keys = [(tokenizer, plan, template, d.id, len(d.text), hash(d.text), hash(d.title)) for d in docs]
        with self._lock:
            out = [self._cuts.get(k) for k in keys]
            todo = [i for i, c in enumerate(out) if c is None]
            self.hits += len(docs) - len(todo)
            self.misses += len(todo)
        if todo:
            for i, c in zip(todo, split(encoder, template, [docs[i] for i in todo], plan)):
                out[i] = c
            with self._lock:
                for i in todo:
                    self._cuts[keys[i]] = out[i]  # type: ignore[assignment]
                while len(self._cuts) > self.size:
                    del self._cuts[next(iter(self._cuts))]
        return out  # type: ignore[return-value]


def passage_texts(template: str, doc: Document, cuts: list[tuple[int, int]]) -> list[str]:
    """The texts embedded for a document's passages (the whole document for one passage)."""
    if len(cuts) == 1 and cuts[0] == (0, len(doc.text)):
        return [template.format(title=doc.title, text=doc.text).strip()]
    return [template.format(title=doc.title, text=doc.text[a:b]).strip() for a, b in cuts]


def encode(encoder: Any, template: str, docs: Sequence[Document], plan: PassagePlan) -> list[np.ndarray]:
    """Per document, its passages' vectors, shape ``(n_passages, dim)`` (one encoder call)."""
    return encode_split(encoder, template, docs, plan)[1]


def encode_split(encoder: Any, template: str, docs: Sequence[Document],
                 plan: PassagePlan) -> tuple[list[list[tuple[int, int]]], list[np.ndarray]]:
    """Per document, its passages' character spans (:func:`split`) and their vectors, shape
    ``(n_passages, dim)`` (one encoder call)."""
    cuts = split(encoder, template, docs, plan)
    texts = [passage_texts(template, d, c) for d, c in zip(docs, cuts)]
    flat = encoder.encode([t for ts in texts for t in ts])
    bounds = np.cumsum([0] + [len(ts) for ts in texts])
    return cuts, [with_cuts(flat[a:b], c) for a, b, c in zip(bounds[:-1], bounds[1:], cuts)]
