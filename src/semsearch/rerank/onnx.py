"""ONNX Runtime path for CPU reranking: export a trained cross-encoder to ``onnx/model.onnx``
and a dynamically int8-quantised ``onnx/model_int8.onnx`` beside it, and score with them.

sentence-transformers' own ONNX backend needs ``optimum-onnx``, whose only release pins
transformers < 4.58 (this project runs transformers 5), so the export here uses
``torch.onnx.export`` and ``onnxruntime.quantization`` directly."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.errors import BadInput

logger = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(model_dir: str | Path, *, quantize: bool = True) -> dict[str, Path]:
    """Write ``onnx/model.onnx`` (and ``onnx/model_int8.onnx``) into a trained model dir.

    Both are written in a temporary directory beside them and renamed into place, so an
    interrupted export never leaves a half-written model that a later run would load."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise BadInput(f"{model_dir} is not a saved cross-encoder directory (no config.json)")
    tok = AutoTokenizer.from_pretrained(model_dir)
    hf = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = model_dir / "onnx"
    out.mkdir(exist_ok=True)
    enc = tok(["a query"], ["a document"], return_tensors="pt")
    args = tuple(enc[k] for k in _INPUTS)
    axes = {k: {0: "batch", 1: "seq"} for k in _INPUTS} | {"logits": {0: "batch"}}
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        with torch.no_grad():
            torch.onnx.export(hf, args, str(tmp / "model.onnx"), input_names=list(_INPUTS),
                              output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False)
        names = {"fp32": "model.onnx"}
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(tmp / "model.onnx"), str(tmp / "model_int8.onnx"), weight_type=QuantType.QInt8)
            names["int8"] = "model_int8.onnx"
        for name in names.values():
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {kind: out / name for kind, name in names.items()}


class OnnxCrossEncoder:
    """The subset of ``CrossEncoder`` the reranker uses (``tokenizer``, ``predict``), on
    ONNX Runtime; scores are the sigmoid of the logit, as ``CrossEncoder.predict`` gives."""

    def __init__(self, model_dir: str | Path, *, file_name: str = "model_int8.onnx",
                 max_length: int = 128, threads: int | None = None) -> None:
        from transformers import AutoConfig, AutoTokenizer

        from semsearch.encoders.onnx import cpu_session

        path = Path(model_dir) / "onnx" / file_name
        if not path.exists() and file_name in ("model.onnx", "model_int8.onnx"):
            logger.info("exporting %s to ONNX (first use of the onnx rerank backend)", model_dir)
            # both files, so a later fp32 or int8 use finds its own; an int8 file already there
            # (a published reranker comes without its fp32 source) is kept as it is
            try:
                export_onnx(model_dir, quantize=not (path.parent / "model_int8.onnx").exists())
            except OSError as e:
                raise BadInput(f"cannot export {model_dir} to ONNX: {e}") from e
        if not path.exists():
            raise BadInput(f"{path} does not exist; run semsearch.rerank.onnx.export_onnx({str(model_dir)!r}) first")
        self.session = cpu_session(path, threads)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.config = AutoConfig.from_pretrained(model_dir)
        self.max_seq_length = max_length

    def predict(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, **_: Any) -> np.ndarray:
        out = []
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i : i + batch_size]
            enc = self.tokenizer([p[0] for p in chunk], [p[1] for p in chunk], padding=True,
                                 truncation=True, max_length=self.max_seq_length, return_tensors="np")
            feed = {k: enc[k].astype(np.int64) for k in _INPUTS}
            logits = self.session.run(["logits"], feed)[0][:, 0]
            out.append(1.0 / (1.0 + np.exp(-logits)))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
