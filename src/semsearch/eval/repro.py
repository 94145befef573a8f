"""What a reader needs to reproduce an evaluation: versions, models and their file hashes,
settings, dataset checksum, command line."""

from __future__ import annotations

import hashlib
import platform
import sys
from pathlib import Path
from typing import Any

from semsearch.config import Settings

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx")


def versions() -> dict[str, str]:
    from importlib import metadata

    from semsearch.indexer.manifest import library_versions

    out = {"python": platform.python_version(), **library_versions()}
    for pkg in ("ranx", "matplotlib", "scipy", "numba"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def model_path(name: str, settings: Settings) -> Path | None:
    """The local directory of a text model name, when there is one."""
    from semsearch.encoders.sbert import DEFAULT_MODEL_NAME, default_model_path

    if Path(name).exists():
        return Path(name)
    if name == DEFAULT_MODEL_NAME and not settings.text_encoder.model:
        try:
            return Path(default_model_path())
        except ImportError:
            return None
    return None


def file_hashes(path: Path) -> dict[str, str]:
    """sha256 of the weight files under ``path`` (relative name -> hex digest)."""
    out: dict[str, str] = {}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    for p in files:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out[str(p.relative_to(path)) if p != path else p.name] = h.hexdigest()
    return out


def models(channels: dict[str, str], settings: Settings, rerankers: dict[str, str] | None = None) -> dict[str, Any]:
    """Model names, paths and weight hashes; ``rerankers``: {name: path} ("" = unnamed)."""
    out: dict[str, Any] = {}
    for channel, name in channels.items():
        p = model_path(name, settings) if channel == "dense" else (Path(name) if Path(name).exists() else None)
        out[channel] = {"name": name, "path": str(p) if p else None,
                        "sha256": file_hashes(p) if p else "not a local path: not hashed"}
    for name, path in (rerankers or {}).items():
        p = Path(path)
        out["reranker" + (f":{name}" if name else "")] = {
            "name": str(path), "path": str(p), "sha256": file_hashes(p) if p.exists() else {}}
    return out


def settings_dump(settings: Settings) -> dict[str, Any]:
    # SecretStr fields dump as '**********'
    return settings.model_dump(mode="json")


def command_line() -> str:
    import shlex

    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "semsearch")):
        argv[0] = "semsearch"
    return " ".join(shlex.quote(a) for a in argv)
