"""Shared bits of the image benchmarks: the flickr500 location and the transformed copies."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEMSEARCH_FLICKR500", REPO / ".." / "shared" / "data" / "flickr500"))
RESULTS = REPO / "bench-results"

TRANSFORMS = [
    "resize50", "jpeg30", "crop10", "bright+20", "bright-20", "grayscale", "hflip", "rotate5", "text",
]


def hash_files(
    files: list[Path], *, workers: int = 2, fast_decode: bool = False, jpeg_decoder: str = "auto",
) -> dict[str, Any]:
    """Ours, as `semsearch index` runs it: the ImageBatchLoader's worker threads decode and
    resize, then pHash, dHash and the mirrored pHash are computed for the whole batch."""
    from semsearch.config import ImageSettings
    from semsearch.documents import Document
    from semsearch.images import hashing
    from semsearch.images.batch import ImageBatchLoader

    roots = sorted({f.resolve().parent for f in files})
    settings = ImageSettings(workers=workers, fast_decode=fast_decode, jpeg_decoder=jpeg_decoder)
    loader = ImageBatchLoader(settings, roots=roots)
    try:
        docs = [Document(id=str(i), image=str(f)) for i, f in enumerate(files)]
        inputs = [r.hashes for r in loader.prepared(docs)]  # as HashChannel.encode reads them
    finally:
        loader.close()
    return {"phash": hashing.compute("phash", inputs), "phash_mirror": hashing.compute("phash", inputs, mirrored=True),
            "dhash": hashing.compute("dhash", inputs)}


def originals(limit: int | None = None) -> list[Path]:
    files = sorted((DATA / "images").glob("*.jpg"))
    if not files:
        raise SystemExit(f"no images under {DATA / 'images'} (set SEMSEARCH_FLICKR500)")
    return files[:limit] if limit else files


def transform(im, name: str):
    from PIL import ImageDraw, ImageEnhance, ImageOps

    w, h = im.size
    if name == "resize50":
        return im.resize((w // 2, h // 2))
    if name == "jpeg30":
        return im  # saved with quality 30 below
    if name == "crop10":  # 10% of each dimension cut: 5% per side
        dx, dy = int(w * 0.05), int(h * 0.05)
        return im.crop((dx, dy, w - dx, h - dy))
    if name == "bright+20":
        return ImageEnhance.Brightness(im).enhance(1.2)
    if name == "bright-20":
        return ImageEnhance.Brightness(im).enhance(0.8)
    if name == "grayscale":
        return ImageOps.grayscale(im).convert("RGB")
    if name == "hflip":
        return ImageOps.mirror(im)
    if name == "rotate5":
        return im.rotate(5, resample=3, expand=False)
    if name == "text":
        out = im.copy()
        d = ImageDraw.Draw(out)
        d.text((int(w * 0.05), int(h * 0.85)), "semsearch (c) 2026", fill=(255, 255, 255))
        return out
    raise ValueError(name)


def make_variants(files: list[Path], cache: Path) -> dict[str, list[Path]]:
    """Write each transformed copy once (JPEG q95, JPEG q30 for 'jpeg30'); reuse the cache."""
    from PIL import Image

    out: dict[str, list[Path]] = {t: [] for t in TRANSFORMS}
    for t in TRANSFORMS:
        (cache / t).mkdir(parents=True, exist_ok=True)
    for f in files:
        im = None
        for t in TRANSFORMS:
            p = cache / t / f.name
            if not p.exists():
                im = im or Image.open(f).convert("RGB")
                transform(im, t).save(p, quality=30 if t == "jpeg30" else 95)
            out[t].append(p)
    return out


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "load1": os.getloadavg()[0],
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    p = RESULTS / f"{name}.json"
    p.write_text(json.dumps(data, indent=1))
    return p
