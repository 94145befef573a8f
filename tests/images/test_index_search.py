"""Image documents end to end: ingestion with per-file errors, CLIP + hash channels,
persistence, search by example image and by text, collapse, dedup."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from semsearch.errors import BadInput
from semsearch.indexer.index import Index
from semsearch.indexer.pipeline import Pipeline, TextChannel
from semsearch.search import Searcher
from tests.images.conftest import drawing, jpeg_bytes, make_image_tree, make_settings, photo


def build(path, inputs, settings, *, clip=True, text=None):
    from semsearch.images.channels import image_channels

    with Index.create(path, settings) as idx:
        chans = ([TextChannel(text)] if text is not None else []) + image_channels(settings, clip=clip)
        report = Pipeline(idx, chans, settings).run(inputs)
        for ch in chans:
            if hasattr(ch, "loader"):
                ch.loader.close()
    return report


@pytest.fixture(scope="module")
def built(tmp_path_factory, photos):
    """One index over the image tree, shared by the read-only tests of this module."""
    from tests.conftest import HashingEncoder

    tmp = tmp_path_factory.mktemp("built")
    tree = make_image_tree(tmp, photos)
    settings = make_settings(tmp)
    report = build(tmp / "idx", [tree], settings, text=HashingEncoder())
    idx = Index.open(tmp / "idx", settings)
    yield report, idx, tree, settings
    idx.close()


def test_image_tree_is_indexed_with_every_channel(built):
    report, idx, image_tree, _ = built
    assert report.rejected == [] and report.indexed == 14
    assert set(idx.vectors) == {"dense", "image", "phash", "dhash", "phash_mirror"}
    assert idx.vectors["image"].count() == 14 and idx.vectors["phash"].count() == 14
    assert idx.vectors["dense"].count() == 2  # only the captioned images have text
    doc = idx.get(["photos/chelsea.jpg"])["photos/chelsea.jpg"]
    assert doc.title == "a ginger cat looking at the camera"
    assert doc.image == str(image_tree / "photos" / "chelsea.jpg")
    spec = idx.manifest.channels["phash"]
    assert spec.backend == "faiss-binary" and spec.dim == 8
    # stored hashes are ImageHash's, byte for byte
    import imagehash

    from semsearch.images.io import load_image

    code = idx.vectors["phash"].codes_of(["photos/coins.jpg"])[0]
    assert bytes(code).hex() == str(imagehash.phash(load_image(image_tree / "photos" / "coins.jpg")))


def test_clip_vectors_are_normalised_and_persisted(built):
    _, idx, *_ = built
    ids = ["photos/camera.jpg", "drawings/d1.png"]
    v = idx.store.vectors(ids, "image", idx.manifest.channels["image"].dim)
    assert v.shape == (2, 32) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert idx.manifest.channels["image"].encoder == "open_clip/tiny_clip/random-seed0"


def test_search_by_identical_image_returns_it_first_on_every_channel(built):
    _, idx, image_tree, _ = built
    s = Searcher(idx)
    for name in ["photos/coffee.jpg", "drawings/d2.png", "photos/rocket.jpg"]:
        res = s.search_by_image(image_tree / name, k=3)
        top = res.hits[0]
        assert top.id == name
        assert top.channels["image"].rank == 1 and top.channels["phash"].rank == 1
        assert top.extra["hamming"]["phash"] == 0 and top.extra["rule"]["phash"] == "direct"
        assert top.channels["image"].score == pytest.approx(1.0, abs=1e-4)


def test_search_by_image_finds_the_flip_by_the_mirrored_rule(built, photos):
    _, idx, *_ = built
    res = Searcher(idx).search_by_image(ImageOps.mirror(photos["coins"]), k=2, channels=["phash"])
    top = res.hits[0]
    assert top.id == "photos/coins.jpg" and top.extra["rule"]["phash"] == "mirrored"
    assert top.extra["hamming"]["phash"] <= 4 and top.channels["phash"].score == top.extra["hamming"]["phash"]


def test_radius_search_returns_only_near_duplicates(built, photos):
    _, idx, *_ = built
    res = Searcher(idx).search_by_image(photos["astronaut"], k=10, channels=["phash", "dhash"], max_distance=10)
    ids = {h.id for h in res.hits}
    assert ids == {"photos/astronaut.jpg", "photos/astronaut_small.jpg", "photos/astronaut_flip.png"}
    assert all(min(h.extra["hamming"].values()) <= 10 for h in res.hits)


def test_text_to_image_goes_through_the_clip_text_tower(built):
    _, idx, _, image_settings = built
    from semsearch.encoders.clip import ClipEncoder

    s = Searcher(idx)
    res = s.search("a photo", k=5, mode="image")
    assert len(res.hits) == 5 and all(set(h.channels) == {"image"} for h in res.hits)
    # the ranking is the CLIP text embedding against the stored image embeddings
    enc = ClipEncoder(image_settings.clip)
    q = enc.encode_texts(["a photo"])[0]
    ids = [h.id for h in res.hits]
    v = idx.store.vectors(ids, "image", 32)
    assert [h.channels["image"].score for h in res.hits] == pytest.approx((v @ q).tolist(), abs=1e-4)


def test_collapse_keeps_one_per_near_duplicate_group(built, photos):
    """``collapse`` on image hits folds near-duplicates by pHash (a resized copy, and a
    mirrored one through the phash_mirror channel), as ``dedup`` groups them."""
    from semsearch.collection import Collection

    _, idx, _, settings = built
    col = Collection(idx, settings)
    plain = col.search("a photo", k=14, mode="image")
    astro = {"photos/astronaut.jpg", "photos/astronaut_small.jpg", "photos/astronaut_flip.png"}
    assert astro <= {h.id for h in plain.hits}
    res = col.search("a photo", k=14, mode="image", collapse=True)
    kept = [h for h in res.hits if h.id in astro]
    assert len(kept) == 1 and len(res.hits) == 12
    assert kept[0].id == next(h.id for h in plain.hits if h.id in astro)  # the best-ranked one
    best_first = [h.id for h in plain.hits if h.id in astro - {kept[0].id}]
    assert kept[0].extra["duplicates"] == best_first
    assert [h.rank for h in res.hits] == list(range(1, 13)) and all(h.document for h in res.hits)
    # the other hits are the plain ranking's, in its order
    assert [h.id for h in res.hits if h.id not in astro] == [h.id for h in plain.hits if h.id not in astro]


def test_dedup_groups_resize_and_flip_with_rules(built, tmp_path):
    _, idx, *_ = built
    from semsearch.images.dedup import find_duplicates
    from semsearch.images.report import write_report

    res = find_duplicates(idx, 10)
    assert res.groups == [["photos/astronaut.jpg", "photos/astronaut_flip.png", "photos/astronaut_small.jpg"]]
    rules = {(a, b): r for a, b, _, r in res.pairs}
    assert rules[("photos/astronaut.jpg", "photos/astronaut_small.jpg")] == "direct"
    assert rules[("photos/astronaut.jpg", "photos/astronaut_flip.png")] == "mirrored"
    assert find_duplicates(idx, 10, mirrored=False).groups == [["photos/astronaut.jpg", "photos/astronaut_small.jpg"]]
    files = write_report(res, tmp_path / "rep", {i: idx.get([i])[i].image for g in res.groups for i in g})
    data = json.loads(files["json"].read_text())
    assert data["groups"] == res.groups and all(len(p) == 3 for p in data["pairs"])
    page = files["html"].read_text()
    assert page.count("data:image/jpeg;base64,") == 3 and "mirrored" in page
    assert files["csv"].read_text().splitlines()[0] == "group,a,b,hamming_distance,rule"


def test_bad_files_are_rejected_one_by_one_and_the_run_goes_on(tmp_path, image_settings):
    root = tmp_path / "mixed"
    root.mkdir()
    drawing(0).save(root / "good.png")
    drawing(1).save(root / "good2.jpg")
    (root / "empty.jpg").write_bytes(b"")
    (root / "fake.png").write_text("plain text")
    data = jpeg_bytes(drawing(2, 300))
    (root / "cut.jpg").write_bytes(data[: len(data) // 3])
    Image.new("L", (3000, 2000)).save(root / "huge.png")
    image_settings.images.max_pixels = 4_000_000
    report = build(tmp_path / "idx", [root], image_settings)
    reasons = {r.id: r.reason for r in report.rejected}
    assert report.indexed == 2 and set(reasons) == {"empty.jpg", "fake.png", "cut.jpg", "huge.png"}
    assert "[empty]" in reasons["empty.jpg"] and "[not-an-image]" in reasons["fake.png"]
    assert "[unreadable]" in reasons["cut.jpg"] and "[too-large]" in reasons["huge.png"]
    assert all(r.startswith("image: ") for r in reasons.values())  # failed in the CLIP channel


def test_jsonl_rows_with_images_and_traversal_outside_roots(tmp_path, image_settings):
    d = tmp_path / "data"
    (d / "pics").mkdir(parents=True)
    photo("coffee").save(d / "pics" / "coffee.jpg")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    drawing(3).save(outside)
    rows = [
        {"id": "c", "image": "pics/coffee.jpg", "title": "coffee", "metadata": {"k": 1}},
        {"id": "evil", "image": f"../../{outside.name}"},
    ]
    (d / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    image_settings.images.roots = [d]
    try:
        report = build(tmp_path / "idx", [d / "in.jsonl"], image_settings, clip=False)
    finally:
        outside.unlink()
    assert report.indexed == 1 and [r.id for r in report.rejected] == ["evil"]
    assert "[outside-roots]" in report.rejected[0].reason


def test_search_by_image_errors_are_typed(built, tmp_path):
    _, idx, *_ = built
    s = Searcher(idx)
    with pytest.raises(BadInput, match="has no image channel 'dense'"):
        s.search_by_image(photo("coins"), channels=["dense"])
    bad = tmp_path / "bad.jpg"
    bad.write_text("x")
    with pytest.raises(BadInput, match="not a recognised image"):
        s.search_by_image(bad)


def test_clip_confirmation_filters_pairs_by_cosine(built):
    _, idx, *_ = built
    from semsearch.images.dedup import find_duplicates

    loose = find_duplicates(idx, 10, min_cosine=-1.0)
    assert loose.rejected_by_clip == 0 and len(loose.pairs) == 3
    strict = find_duplicates(idx, 10, min_cosine=1.01)  # no pair can pass: all rejected
    assert strict.rejected_by_clip == 3 and strict.groups == [] and strict.pairs == []


def test_rerun_is_unchanged_and_delete_reaches_the_hash_index(tmp_path, image_tree, image_settings):
    path = tmp_path / "idx"
    first = build(path, [image_tree], image_settings, clip=False)
    again = build(path, [image_tree], image_settings, clip=False)
    assert first.indexed == 14 and again.unchanged == 14 and again.indexed == 0
    with Index.open(path, image_settings, writable=True) as idx:
        assert idx.delete(["photos/astronaut_small.jpg"]) == 1
        idx.sync()
    with Index.open(path, image_settings) as idx:
        assert idx.vectors["phash"].count() == 13 and idx.vectors["phash_mirror"].count() == 13
        res = Searcher(idx).search_by_image(image_tree / "photos" / "astronaut.jpg", channels=["phash"], max_distance=10)
        assert {h.id for h in res.hits} == {"photos/astronaut.jpg", "photos/astronaut_flip.png"}


def test_closing_a_collection_stops_its_image_workers_and_restores_numpy_blas(tmp_path, image_tree, image_settings):
    """Image writes through a Collection start a loader (worker threads, numpy's BLAS held
    at one thread while it is open); close() stops them. Before, they outlived the
    collection: the process's numpy BLAS stayed at one thread."""
    import threading

    import semsearch
    from semsearch.images import resample

    users = resample._blas_users
    with semsearch.Collection.create(tmp_path / "ix", image_settings) as col:
        docs = [semsearch.Document(id=p.stem, image=str(p)) for p in sorted((image_tree / "photos").glob("*.jpg"))[:3]]
        assert col.upsert(docs, wait_for=True).searchable
        assert resample._blas_users == users + 1
        assert any(t.name.startswith("semsearch-img") for t in threading.enumerate())
    assert resample._blas_users == users
    assert not any(t.name.startswith("semsearch-img") for t in threading.enumerate())
