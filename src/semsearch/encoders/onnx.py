"""ONNX Runtime text encoder for CPU query latency.

The sentence-transformers model (transformer + pooling + normalisation) is exported once with
``torch.onnx.export`` into a cache directory beside its tokenizer; afterwards queries are
tokenised with the Rust ``tokenizers`` library and embedded by ONNX Runtime, without torch in the
query path. On 2 cores this is several times faster than PyTorch for one short query, whose cost is
per-operator overhead rather than arithmetic. fp32 vectors match the PyTorch encoder's to ~1e-6, so
an index built with either backend is searched with the other (the model name is the same).

sentence-transformers' own ONNX backend needs ``optimum-onnx``, whose only release pins
transformers < 4.58, so the export is done here (as for the reranker, ``rerank/onnx.py``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from semsearch.config import TextEncoderSettings
from semsearch.encoders.base import l2_normalize
from semsearch.encoders.sbert import DEFAULT_MODEL_NAME, default_model_path
from semsearch.errors import BadInput, require

logger = logging.getLogger(__name__)

EXPORT_FORMAT = 1
_META = "semsearch-onnx.json"


def cpu_session(path: Path, threads: int | None = None, *, spinning: bool = True):  # noqa: ANN201
    """An ONNX Runtime CPU session for ``path`` (``threads`` intra-op threads; None = ORT's default;
    ``spinning``: its worker threads busy-wait between operators, ORT's default). Shared by the
    text encoder and the ONNX reranker (``rerank/onnx.py``)."""
    ort = require("onnxruntime", "onnx")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "semsearch" / "onnx"


def _model_key(source: str) -> str:
    """A cache key that changes when a local model's files change."""
    p = Path(source)
    parts = [source, str(EXPORT_FORMAT)]
    if p.exists():
        parts = [str(p.resolve()), str(EXPORT_FORMAT)]
        for f in sorted(p.rglob("*")):
            if f.is_file() and f.suffix in {".safetensors", ".bin", ".json", ".txt"}:
                st = f.stat()
                parts.append(f"{f.relative_to(p)}:{st.st_size}:{int(st.st_mtime)}")
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(source).name)[:40]
    return f"{stem}-{digest}"


def export_text_encoder(source: str, out_dir: Path) -> Path:
    """Export a sentence-transformers model to ``out_dir`` (``model.onnx``, ``tokenizer.json``,
    ``semsearch-onnx.json``). Written into a temporary sibling and renamed into place, so a
    crash never leaves a half-written export that a later run would trust."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        st = SentenceTransformer(source, device="cpu")
    except OSError as e:
        raise BadInput(f"text encoder model {source!r} cannot be loaded for ONNX export: {e}") from e
    st.eval()
    tok = st.tokenizer
    if not getattr(tok, "is_fast", False):
        raise BadInput(f"text encoder {source!r} has no fast tokenizer; the ONNX backend needs one (use backend=torch)")
    inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tok.model_input_names]

    class _Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.st(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]

    sample = tok(["a short query", "a somewhat longer second text to pad against"], padding=True, return_tensors="pt")
    args = tuple(sample[n] for n in inputs)
    axes = {n: {0: "batch", 1: "seq"} for n in inputs} | {"embedding": {0: "batch"}}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with torch.no_grad():
            torch.onnx.export(_Embed(), args, str(tmp / "model.onnx"), input_names=inputs,
                              output_names=["embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)
        tok.backend_tokenizer.save(str(tmp / "tokenizer.json"))
        meta = {
            "format": EXPORT_FORMAT,
            "source": source,
            "inputs": inputs,
            "dim": int(st.get_embedding_dimension()),
            "max_seq_length": int(st.max_seq_length),
            "pad_token": tok.pad_token,
            "pad_token_id": int(tok.pad_token_id),
        }
        (tmp / _META).write_text(json.dumps(meta, indent=2))
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not (out_dir / _META).exists():
                raise
            shutil.rmtree(tmp)  # another process finished the same export first: keep theirs
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("exported text encoder %s to %s", source, out_dir)
    return out_dir


def quantized(model: Path) -> Path:
    """``model_int8.onnx`` beside ``model``: its weights dynamically quantized to int8 per
    output channel (ONNX Runtime's ``quantize_dynamic``), made on first use and renamed into
    place. Per channel, MiniLM's SciFact query vectors keep a cosine of 0.992 to fp32 (0.958
    per tensor) at 1.66x less CPU per query (docs/api.md)."""
    out = model.with_name("model_int8.onnx")
    if out.exists():
        return out
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = model.with_name(f".model_int8.tmp-{os.getpid()}.onnx")
    try:
        quantize_dynamic(str(model), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("quantized %s to int8 (%s)", model, out.name)
    return out


class OnnxTextEncoder:
    """The ``TextEncoder`` protocol on ONNX Runtime (CPU). Exports the model on first use."""

    def __init__(self, settings: TextEncoderSettings | None = None, *, fallback: bool = False) -> None:
        self.settings = settings or TextEncoderSettings()
        #: chosen automatically: a model that cannot be exported runs on PyTorch instead
        self.fallback = fallback
        self._lock = threading.Lock()
        self._session = None
        self._tokenizer = None
        self._span_tokenizer = None  # the same tokenizer without truncation or padding
        self._meta: dict | None = None
        self._delegate = None  # the PyTorch encoder, after a failed export with fallback

    @property
    def name(self) -> str:
        return self.settings.model or DEFAULT_MODEL_NAME

    @property
    def source(self) -> str:
        """The configured model, or the bundled MiniLM's local path."""
        return self.settings.model or default_model_path()

    @property
    def export_dir(self) -> Path:
        root = self.settings.onnx_dir or default_cache_dir()
        return Path(root) / _model_key(self.source)

    def _load(self) -> None:
        from tokenizers import Tokenizer

        require("onnxruntime", "onnx")  # before an export that would be of no use
        d = self.export_dir
        if not (d / _META).exists():
            export_text_encoder(self.source, d)
        meta = json.loads((d / _META).read_text())
        if meta.get("format") != EXPORT_FORMAT:
            raise BadInput(f"ONNX export at {d} has format {meta.get('format')}, expected {EXPORT_FORMAT}; delete it")
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        max_len = self.settings.max_seq_length or meta["max_seq_length"]
        tok.enable_truncation(max_length=max_len)
        tok.enable_padding(pad_id=meta["pad_token_id"], pad_token=meta["pad_token"])
        model = quantized(d / "model.onnx") if self.settings.onnx_int8 else d / "model.onnx"
        self._session = cpu_session(model, self.settings.onnx_threads,
                                    spinning=self.settings.onnx_spinning)
        self._tokenizer, self._meta = tok, meta
        spans = Tokenizer.from_file(str(d / "tokenizer.json"))
        spans.no_truncation()
        spans.no_padding()  # the saved tokenizer may carry the padding of its export
        self._span_tokenizer = spans
        logger.info("text encoder %s on ONNX Runtime from %s", self.name, d)

    def prepare(self) -> bool:
        """Export the model now if it has not been (``semsearch index`` and ``serve`` call
        this, so that no search pays for the export). False when it cannot be exported and
        ``fallback`` lets queries run on PyTorch instead."""
        if (self.export_dir / _META).exists():
            return True
        try:
            require("onnxruntime", "onnx")
            export_text_encoder(self.source, self.export_dir)
        except BadInput:
            raise
        except Exception as e:
            if not self.fallback:
                raise
            logger.warning("text encoder %s cannot be exported to ONNX (%s: %s); queries will use PyTorch",
                           self.name, type(e).__name__, e)
            return False
        return True

    def _ready(self) -> None:
        if self._session is None and self._delegate is None:
            with self._lock:
                if self._session is None and self._delegate is None:
                    try:
                        self._load()
                    except BadInput:
                        raise
                    except Exception as e:
                        if not self.fallback:
                            raise
                        from semsearch.encoders.sbert import SentenceTransformerEncoder

                        logger.warning("text encoder %s cannot run on ONNX Runtime (%s: %s); using PyTorch",
                                       self.name, type(e).__name__, e)
                        self._delegate = SentenceTransformerEncoder(self.settings)

    @property
    def backend(self) -> str:
        """"onnx", or "torch" after a fallback (known once the model has loaded)."""
        return "torch" if self._delegate is not None else "onnx"

    @property
    def dim(self) -> int:
        self._ready()
        if self._delegate is not None:
            return self._delegate.dim
        return int(self._meta["dim"])

    @property
    def max_length(self) -> int:
        """Word pieces per input, special tokens included (longer texts are truncated)."""
        self._ready()
        if self._delegate is not None:
            return self._delegate.max_length
        return int(self.settings.max_seq_length or self._meta["max_seq_length"])

    @property
    def special_tokens(self) -> int:
        self._ready()
        if self._delegate is not None:
            return self._delegate.special_tokens
        return len(self._span_tokenizer.encode("").ids)

    def token_spans(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, the character offsets of its word pieces (see the PyTorch encoder's)."""
        self._ready()
        if self._delegate is not None:
            return self._delegate.token_spans(texts)
        with self._lock:  # tokenizers are not thread-safe
            encs = self._span_tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2) for e in encs]

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            raise BadInput("encode() takes a sequence of texts, not a single string")
        self._ready()
        if self._delegate is not None:
            return self._delegate.encode(texts, batch_size=batch_size)
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        bs = batch_size or self.settings.onnx_batch_size
        names = self._meta["inputs"]
        # longest first, as sentence-transformers does, so each batch pads little
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = []
        for i in range(0, len(texts), bs):
            encs = self._tokenizer.encode_batch([texts[j] for j in order[i : i + bs]])
            cols = {
                "input_ids": [e.ids for e in encs],
                "attention_mask": [e.attention_mask for e in encs],
                "token_type_ids": [e.type_ids for e in encs],
            }
            feed = {n: np.asarray(cols[n], dtype=np.int64) for n in names}
            out.append(self._session.run(["embedding"], feed)[0])
        emb = np.empty((len(texts), self.dim), dtype=np.float32)
        emb[order] = np.concatenate(out)
        return l2_normalize(emb)
