"""The index's own search defaults (``Manifest.tuned``, written by ``semsearch adapt``).

``tuned`` holds ``fusion`` and ``rerank`` sections (settings field -> value, e.g.
``{"fusion": {"method": "convex", "weights": {...}}}``) and ``dense_encoder``, a fine-tuned
text encoder folder relative to the index. They are defaults: a setting the user sets
explicitly (environment, settings object) and a request's own options win over them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from semsearch.config import Settings

SECTIONS = ("fusion", "rerank")


def _resolve(index_path: Path | None, rel: str) -> str:
    p = Path(rel)
    return str(p if p.is_absolute() or index_path is None else (Path(index_path) / p).resolve())


def effective_settings(settings: Settings, tuned: dict[str, Any], index_path: Path | None) -> Settings:
    """``settings`` with the index's tuned defaults filled in where the user set nothing
    (``index_path``: where relative model folders are; None for the Elasticsearch store)."""
    if not tuned:
        return settings
    update: dict[str, Any] = {}
    for section in SECTIONS:
        values = dict(tuned.get(section) or {})
        cur = getattr(settings, section)
        values = {k: v for k, v in values.items() if k not in cur.model_fields_set}
        if section == "rerank" and "model" in values and values["model"]:
            values["model"] = _resolve(index_path, values["model"])
        if values:
            update[section] = cur.model_copy(update=values)
    enc = tuned.get("dense_encoder")
    if enc and "model" not in settings.text_encoder.model_fields_set and settings.text_encoder.model is None:
        update["text_encoder"] = settings.text_encoder.model_copy(update={"model": _resolve(index_path, enc)})
    return settings.model_copy(update=update) if update else settings
