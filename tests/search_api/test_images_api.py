"""Image endpoints through FastAPI's TestClient on a real image index: real photographs
(skimage.data) and Pillow drawings, a tiny random-weight CLIP, real pHash/dHash channels in
binary FAISS, MiniLM for the captions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.images.conftest import PHOTOS, drawing, jpeg_bytes, make_image_tree, make_settings, photo
from tests.search_api.conftest import API_KEY, WRITE


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR chunk (CRC fixed up) claims ``width`` x ``height``."""
    import struct
    import zlib

    data = bytearray(png_bytes(Image.new("RGB", (1, 1))))
    ihdr = bytearray(data[12:29])  # chunk type + 13 bytes of header
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def image_app_settings(tmp: Path):
    from pydantic import SecretStr

    s = make_settings(tmp)
    s.api_key = SecretStr(API_KEY)
    s.api.max_upload_bytes = 200_000
    s.api.max_image_pixels = 300_000
    return s


def build_image_index(tmp: Path, settings, minilm) -> Path:
    from semsearch.images.channels import image_channels
    from semsearch.indexer.index import Index
    from semsearch.indexer.pipeline import Pipeline, TextChannel

    tree = make_image_tree(tmp, {n: photo(n) for n in PHOTOS})
    with Index.create(tmp / "idx", settings) as idx:
        chans = [TextChannel(minilm), *image_channels(settings)]
        report = Pipeline(idx, chans, settings).run([tree])
        for ch in chans:
            if hasattr(ch, "loader"):
                ch.loader.close()
    assert not report.rejected and report.indexed == 14
    return tmp / "idx"


@pytest.fixture(scope="module")
def image_env(tmp_path_factory, minilm):
    tmp = tmp_path_factory.mktemp("imgapi")
    settings = image_app_settings(tmp)
    return build_image_index(tmp, settings, minilm), settings


@pytest.fixture(scope="module")
def iclient(image_env, minilm):
    """A client on the shared image index, for tests that do not write."""
    from fastapi.testclient import TestClient

    from semsearch.search_api.app import create_app

    path, settings = image_env
    with TestClient(create_app(path, settings, encoder=minilm)) as c:
        yield c


@pytest.fixture
def wclient(tmp_path, minilm):
    """A client on a fresh image index of its own, for tests that write."""
    from fastapi.testclient import TestClient

    from semsearch.search_api.app import create_app

    settings = image_app_settings(tmp_path)
    path = build_image_index(tmp_path, settings, minilm)
    with TestClient(create_app(path, settings, encoder=minilm)) as c:
        yield c, tmp_path


def upload(client, data: bytes, media_type: str = "image/jpeg", name: str = "q.jpg", **form):
    return client.post("/v1/search/image", files={"file": (name, data, media_type)},
                       data={k: str(v) for k, v in form.items()})


def test_upload_finds_the_same_photo_first_with_hamming_distances(iclient):
    r = upload(iclient, jpeg_bytes(photo("astronaut"), quality=92), k=5)
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["channels"] == ["image", "phash"] and (res["width"], res["height"]) == (256, 256)
    top = res["hits"][0]
    assert top["id"] == "photos/astronaut.jpg"
    assert top["channels"]["image"]["rank"] == 1 and top["channels"]["phash"]["rank"] == 1
    assert top["hamming"]["phash"] <= 2 and top["rule"]["phash"] == "direct"
    assert top["image_url"] == "/v1/images/photos/astronaut.jpg"
    thumb = iclient.get(top["image_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    im = Image.open(io.BytesIO(thumb.content))
    assert im.format == "JPEG" and max(im.size) == 256
    assert max(Image.open(io.BytesIO(iclient.get(top["image_url"] + "?size=64").content)).size) == 64


def test_hash_radius_search_finds_resized_and_mirrored_copies(iclient):
    q = ImageOps.mirror(photo("astronaut"))
    res = upload(iclient, png_bytes(q), "image/png", "flip.png", channels="phash", max_distance=10, k=20).json()
    by_id = {h["id"]: h for h in res["hits"]}
    assert set(by_id) == {"photos/astronaut.jpg", "photos/astronaut_small.jpg", "photos/astronaut_flip.png"}
    assert by_id["photos/astronaut_flip.png"]["rule"]["phash"] == "direct"
    assert by_id["photos/astronaut.jpg"]["rule"]["phash"] == "mirrored"
    assert all(h["hamming"]["phash"] <= 10 for h in res["hits"])
    dists = [h["hamming"]["phash"] for h in res["hits"]]
    assert dists == sorted(dists)
    assert [h["score"] for h in res["hits"]] == [-d for d in dists]


def test_image_by_text_mode_returns_image_hits(iclient):
    r = iclient.post("/v1/search", json={"query": "a ginger cat", "mode": "image", "k": 5})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["mode"] == "image" and len(res["hits"]) == 5
    for h in res["hits"]:
        assert set(h["channels"]) == {"image"} and h["image_url"].startswith("/v1/images/")
    # the ranking is the CLIP text tower's: the cosine scores fall with rank
    scores = [h["channels"]["image"]["score"] for h in res["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_collapse_on_image_hits_folds_near_duplicate_images(iclient):
    """``collapse`` with mode image groups by pHash (resized and mirrored copies), not by the
    text vectors that images have none of."""
    body = {"query": "a photo", "mode": "image", "k": 14}
    plain = iclient.post("/v1/search", json=body).json()["hits"]
    astro = {"photos/astronaut.jpg", "photos/astronaut_small.jpg", "photos/astronaut_flip.png"}
    assert astro <= {h["id"] for h in plain}
    r = iclient.post("/v1/search", json={**body, "collapse": True})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    kept = [h for h in hits if h["id"] in astro]
    assert len(hits) == 12 and len(kept) == 1
    assert set(kept[0]["duplicates"]) == astro - {kept[0]["id"]}
    assert [h["rank"] for h in hits] == list(range(1, 13))


@pytest.mark.parametrize("mode", ["images", "bogus"])
def test_unknown_mode_is_422(iclient, mode):
    r = iclient.post("/v1/search", json={"query": "cat", "mode": mode})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("body.mode")


def duplicates_job(client, body, headers=WRITE):
    """POST /v1/duplicates (202 + a job), then the job's result once it is done."""
    import time

    r = client.post("/v1/duplicates", json=body, headers=headers)
    assert r.status_code == 202, r.text
    url = r.json()["status_url"]
    assert r.headers["location"] == url
    for _ in range(600):
        job = client.get(url).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {url} did not finish: {job}")


def test_duplicates_groups_and_pairs(iclient):
    job = duplicates_job(iclient, {"max_distance": 10})
    assert job["status"] == "done" and job["kind"] == "duplicates", job
    res = job["result"]
    assert res["images"] == 14 and res["max_distance"] == 10
    assert {"photos/astronaut.jpg", "photos/astronaut_small.jpg", "photos/astronaut_flip.png"} in [set(g) for g in res["groups"]]
    rules = {frozenset((p["a"], p["b"])): p["rule"] for p in res["pairs"]}
    assert rules[frozenset(("photos/astronaut.jpg", "photos/astronaut_flip.png"))] == "mirrored"
    assert all(p["distance"] <= 10 for p in res["pairs"])
    no_flip = duplicates_job(iclient, {"max_distance": 10, "mirrored": False})["result"]
    assert all(p["rule"] == "direct" for p in no_flip["pairs"])
    assert "photos/astronaut_flip.png" not in {i for g in no_flip["groups"] for i in g}
    assert iclient.post("/v1/duplicates", json={"max_distance": 65}, headers=WRITE).status_code == 422


def test_duplicates_need_the_api_key_by_default(iclient):
    r = iclient.post("/v1/duplicates", json={"max_distance": 10})
    assert r.status_code == 401 and "api.duplicates_need_key" in r.json()["error"]["message"]
    assert iclient.get("/v1/jobs/nope").status_code == 404


def test_stats_reports_image_features(iclient):
    s = iclient.get("/v1/stats").json()
    assert s["features"]["image_search"] and s["features"]["duplicates"] and s["features"]["image_text"]
    assert s["channels"]["phash"]["count"] == 14 and s["models"]["clip"]


def test_upload_limits_and_media_types(iclient):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8))
    big = png_bytes(noise)
    assert len(big) > 200_000
    r = upload(iclient, big, "image/png", "noise.png")
    assert r.status_code == 413 and "200000 bytes" in r.json()["error"]["message"]

    huge = png_bytes(Image.new("RGB", (1000, 1000), "white"))  # small file, 1 MP
    assert len(huge) < 200_000
    r = upload(iclient, huge, "image/png", "white.png")
    assert r.status_code == 413
    msg = r.json()["error"]["message"]
    assert "1000x1000 = 1000000 pixels exceeds the limit of 300000" in msg and "white.png" in msg

    # bombs: headers claiming 10000 x 10000 (300 MB decoded) and 50000 x 50000 pixels.
    # Rejected from the header (413), never decoded (which would fail as truncated: 400);
    # the second by Pillow's own guard inside Image.open, mapped to the same answer.
    r = upload(iclient, png_claiming(10_000, 10_000), "image/png", "bomb.png")
    assert r.status_code == 413 and "10000x10000 = 100000000 pixels exceeds the limit of 300000" in r.json()["error"]["message"]
    r = upload(iclient, png_claiming(50_000, 50_000), "image/png", "bomb2.png")
    assert r.status_code == 413 and "decompression-bomb guard" in r.json()["error"]["message"]

    r = upload(iclient, b"hello, not an image", "text/plain", "a.txt")
    assert r.status_code == 415 and "text/plain" in r.json()["error"]["message"]

    r = upload(iclient, b"\x00garbage bytes that are no PNG" * 10, "image/png", "fake.png")
    assert r.status_code == 400
    assert "fake.png" in r.json()["error"]["message"] and "not a recognised image format" in r.json()["error"]["message"]

    # a JPEG declared as PNG does not reach the JPEG decoder
    r = upload(iclient, jpeg_bytes(photo("coffee")), "image/png", "coffee.png")
    assert r.status_code == 400 and "not a recognised image format" in r.json()["error"]["message"]

    truncated = jpeg_bytes(photo("coffee"))[:1500]
    r = upload(iclient, truncated, "image/jpeg", "cut.jpg")
    assert r.status_code == 400 and "cut.jpg" in r.json()["error"]["message"]

    assert upload(iclient, b"", "image/png", "empty.png").status_code == 400
    r = upload(iclient, jpeg_bytes(photo("coffee")), channels="clip")
    assert r.status_code == 400 and "'clip'" in r.json()["error"]["message"]
    assert upload(iclient, jpeg_bytes(photo("coffee")), k=0).status_code == 422
    assert iclient.post("/v1/search/image", data={"k": "3"}).status_code == 422  # no file


def test_thumbnails_only_for_indexed_images(iclient):
    assert iclient.get("/v1/images/nope.jpg").status_code == 404
    assert iclient.get("/v1/images/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert iclient.get("/v1/images/photos/astronaut.jpg?size=5").status_code == 422


def test_image_documents_are_validated_embedded_and_searchable(wclient):
    client, tmp = wclient
    new = tmp / "uploads"
    new.mkdir()
    drawing(7).save(new / "d7.png")
    (new / "broken.png").write_bytes(b"\x89PNG not really")
    outside = tmp.parent / f"{tmp.name}-outside.png"
    drawing(8).save(outside)
    try:
        bad = client.post("/v1/documents", headers=WRITE, json={"documents": [
            {"id": "ok", "image": str(new / "d7.png"), "title": "seven"},
            {"id": "broken", "image": str(new / "broken.png")},
            {"id": "escape", "image": str(outside)},
            {"id": "dotdot", "image": str(new / ".." / ".." / outside.name)},
        ]})
    finally:
        outside.unlink()
    assert bad.status_code == 400
    msg = bad.json()["error"]["message"]
    assert "3 image(s) cannot be used, nothing was written" in msg
    assert "document 'broken': [not-an-image]" in msg
    assert "document 'escape': [outside-roots]" in msg and "document 'dotdot': [outside-roots]" in msg
    assert client.get("/v1/documents/ok").status_code == 404  # nothing was written

    r = client.post("/v1/documents", headers=WRITE, json={"documents": [
        {"id": "new/d7", "image": str(new / "d7.png"), "title": "a drawing of shapes"},
        {"id": "t1", "title": "plain text", "text": "a text document beside the image"},
    ]})
    assert r.status_code == 200, r.text
    assert r.json()["searchable"] and r.json()["durable"]
    res = upload(client, png_bytes(drawing(7)), "image/png", "d7.png", k=3).json()
    top = res["hits"][0]
    assert top["id"] == "new/d7" and top["hamming"]["phash"] == 0 and top["title"] == "a drawing of shapes"
    assert client.get("/v1/images/new/d7").status_code == 200
    assert client.get("/v1/images/t1").status_code == 404  # a text document has no image
    stats = client.get("/v1/stats").json()
    assert stats["channels"]["image"]["count"] == 15 and stats["channels"]["dense"]["count"] == 4  # 2 captions + 2 new
    text = client.post("/v1/search", json={"query": "a text document beside the image", "k": 1}).json()
    assert text["hits"][0]["id"] == "t1"

    assert client.delete("/v1/documents/new/d7", headers=WRITE).status_code == 200
    res = upload(client, png_bytes(drawing(7)), "image/png", "d7.png", k=3).json()
    assert "new/d7" not in {h["id"] for h in res["hits"]}


def test_image_documents_need_image_roots(client, tmp_path):
    """The text index of the other tests has no image roots: image paths are never read."""
    drawing(1).save(tmp_path / "x.png")
    r = client.post("/v1/documents", headers=WRITE,
                    json={"documents": [{"id": "x", "image": str(tmp_path / "x.png")}]})
    assert r.status_code == 400 and "SEMSEARCH_IMAGES__ROOTS" in r.json()["error"]["message"]
    assert client.get("/v1/documents/x").status_code == 404
    feats = client.get("/v1/stats").json()["features"]
    assert not feats["image_search"] and not feats["duplicates"]
    r = upload(client, jpeg_bytes(photo("coffee")))
    assert r.status_code == 400 and "no image channels" in r.json()["error"]["message"]
    assert client.post("/v1/duplicates", json={}, headers=WRITE).status_code == 400
