"""Images in the Elasticsearch store: CLIP embeddings (text to image, search by example
image), the stored perceptual hashes (``bit`` vectors, Hamming distance), near-duplicate
groups and collapsed hits, checked against the local index over the same image tree (real
photographs, a resized and a mirrored copy; a tiny random-weight CLIP, the same on both)."""

from __future__ import annotations

import pytest
from PIL import ImageOps

from semsearch.collection import Collection
from semsearch.errors import BadInput
from semsearch.store_es.ingest import ingest
from tests.conftest import store_settings
from tests.images.conftest import PHOTOS, make_image_tree, make_settings, photo

pytestmark = pytest.mark.integration

ASTRO = {"photos/astronaut.jpg", "photos/astronaut_small.jpg", "photos/astronaut_flip.png"}


@pytest.fixture(scope="module")
def photos():
    return {n: photo(n) for n in PHOTOS}


@pytest.fixture(scope="module")
def both(tmp_path_factory, es_url, photos):
    """(local, store, tree): the same image tree indexed into a local index (CLIP and hash
    channels) and into the store through ``semsearch index``'s ingest (exact float vectors,
    so that CLIP scores compare with the local exact search)."""
    import uuid

    from elasticsearch import Elasticsearch

    from semsearch.images.channels import close_channels, image_channels
    from semsearch.indexer.index import Index
    from semsearch.indexer.pipeline import Pipeline

    tmp = tmp_path_factory.mktemp("store-images")
    tree = make_image_tree(tmp, photos)
    local_settings = make_settings(tmp)
    with Index.create(tmp / "idx", local_settings) as idx:
        chans = image_channels(local_settings)
        Pipeline(idx, chans, local_settings).run([tree])
        close_channels(chans)
    name = f"semsearch-test-img-{uuid.uuid4().hex[:10]}"
    s = store_settings(es_url, name, vector_index="flat")
    s.images.roots = [tmp]
    s.clip = local_settings.clip
    store = Collection.create(None, s)
    report = ingest(store, [tree], s)
    assert report["indexed"] == 14 and not report["rejected"]
    local = Collection.open(tmp / "idx", local_settings)
    yield local, store, tree
    store.close()
    local.close()
    client = Elasticsearch(es_url)
    client.options(ignore_status=404).indices.delete(index=f"{name}*", expand_wildcards="all")
    client.close()


def _view(res):
    return [(h.id, h.extra.get("hamming"), h.extra.get("rule")) for h in res.hits]


def test_search_by_image_matches_the_local_index(both, photos):
    local, store, tree = both
    assert set(store.channels) >= {"phash", "dhash", "phash_mirror"}
    for name in ("photos/coffee.jpg", "drawings/d2.png", "photos/rocket.jpg"):
        res = store.search_by_image(tree / name, k=3)
        top = res.hits[0]
        assert top.id == name and top.extra["hamming"]["phash"] == 0 and top.extra["rule"]["phash"] == "direct"
        assert top.document is not None and top.document.image is not None
        assert _view(res)[:1] == _view(local.search_by_image(tree / name, k=3, channels=["phash"]))[:1]
    # a flipped query finds the original by the mirrored rule, at the same distance as locally
    flip = ImageOps.mirror(photos["coins"])
    ours = store.search_by_image(flip, k=2, channels=["phash"])
    assert ours.hits[0].id == "photos/coins.jpg" and ours.hits[0].extra["rule"]["phash"] == "mirrored"
    assert _view(ours)[0] == _view(local.search_by_image(flip, k=2, channels=["phash"]))[0]
    # a radius: only the near-duplicates, two channels fused as locally
    near = store.search_by_image(photos["astronaut"], k=10, channels=["phash", "dhash"], max_distance=10)
    assert {h.id for h in near.hits} == ASTRO
    want = local.search_by_image(photos["astronaut"], k=10, channels=["phash", "dhash"], max_distance=10)
    assert sorted(_view(near), key=str) == sorted(_view(want), key=str)


def test_clip_embeddings_are_stored_and_searched_as_locally(both, photos):
    local, store, tree = both
    assert "image" in store.channels and store.stats()["models"]["clip"] == local.stats()["models"]["clip"]
    ids = ["photos/coffee.jpg", "drawings/d2.png", "photos/astronaut_flip.png"]
    assert store.vectors(ids, "image") == pytest.approx(local.vectors(ids, "image"), abs=1e-6)
    # text to image through the CLIP text tower
    ours, want = (c.search("a cup of coffee", mode="image", k=6) for c in (store, local))
    assert [h.id for h in ours.hits] == [h.id for h in want.hits]
    assert [h.channels["image"].score for h in ours.hits] == pytest.approx(
        [h.channels["image"].score for h in want.hits], abs=1e-4)
    assert all(h.document is not None and h.document.image for h in ours.hits)
    # by example image: CLIP and pHash fused by RRF, the default channels on both
    ours, want = (c.search_by_image(photos["rocket"], k=5) for c in (store, local))
    assert set(ours.hits[0].channels) == {"image", "phash"} and ours.hits[0].id == "photos/rocket.jpg"
    assert [h.id for h in ours.hits] == [h.id for h in want.hits]
    only = store.search_by_image(photos["rocket"], k=3, channels=["image"])
    assert only.hits[0].id == "photos/rocket.jpg" and set(only.hits[0].channels) == {"image"}
    # collapse on image hits: one of the astronaut group, as locally
    ours, want = (c.search("a photo", mode="image", k=14, collapse=True) for c in (store, local))
    assert [(h.id, h.extra.get("duplicates")) for h in ours.hits] == [(h.id, h.extra.get("duplicates")) for h in want.hits]
    assert len([h for h in ours.hits if h.id in ASTRO]) == 1
    # the direct and the mirrored hashes of the window in one mget
    calls, real = [], store.conn.call
    store.conn.call = lambda what, fn: calls.append(what) or real(what, fn)
    try:
        store.search("a photo", mode="image", k=14, collapse=True, with_documents=False)
    finally:
        store.conn.call = real
    assert [c for c in calls if c.startswith("get vectors")] == [f"get vectors from {store.alias}"]
    # a rebuild (a new physical index) keeps the CLIP field, its mapping and its manifest entry
    before = store.search("a cup of coffee", mode="image", k=6)
    store.rebuild()
    after = store.search("a cup of coffee", mode="image", k=6)
    assert [(h.id, round(h.score, 4)) for h in after.hits] == [(h.id, round(h.score, 4)) for h in before.hits]
    assert store.reload_manifest()["clip"] == {"encoder": local.stats()["models"]["clip"], "dim": 32}


def test_a_store_indexed_without_clip_has_no_image_channel(es_url, tmp_path, photos):
    import uuid

    from elasticsearch import Elasticsearch

    from semsearch.documents import Document

    photos["coffee"].save(tmp_path / "coffee.jpg", quality=92)
    name = f"semsearch-test-noclip-{uuid.uuid4().hex[:10]}"
    s = store_settings(es_url, name)
    s.images.roots = [tmp_path]
    with Collection.create(None, s) as store:
        try:
            store.clip_images = False  # semsearch index --no-clip
            store.upsert([Document(id="c", image=str(tmp_path / "coffee.jpg"))], wait_for=True)
            assert "image" not in store.channels and "phash" in store.channels
            with pytest.raises(BadInput, match="no image channel 'image'"):
                store.search_by_image(photos["coffee"], channels=["image"])
            with pytest.raises(BadInput, match="no image channel"):
                store.search("coffee", mode="image")
            with pytest.raises(BadInput, match="CLIP"):
                store.duplicates(10, min_cosine=0.9)
            assert store.search_by_image(photos["coffee"], k=1).hits[0].id == "c"
        finally:
            client = Elasticsearch(es_url)
            client.options(ignore_status=404).indices.delete(index=f"{name}*", expand_wildcards="all")
            client.close()


def test_duplicate_groups_match_the_local_index(both):
    local, store, _ = both
    res = store.duplicates(10)
    assert res.groups == [sorted(ASTRO)] and res.images == 14
    assert res.groups == local.duplicates(10).groups
    assert sorted(res.pairs) == sorted(local.duplicates(10).pairs)
    rules = {(a, b): r for a, b, _, r in res.pairs}
    assert rules[("photos/astronaut.jpg", "photos/astronaut_flip.png")] == "mirrored"
    assert store.duplicates(10, mirrored=False).groups == [["photos/astronaut.jpg", "photos/astronaut_small.jpg"]]
    # pairs confirmed by CLIP cosine, as locally
    for cos in (0.0, 0.999):
        ours, want = store.duplicates(10, min_cosine=cos), local.duplicates(10, min_cosine=cos)
        assert (ours.groups, ours.rejected_by_clip) == (want.groups, want.rejected_by_clip)


def test_image_endpoints_over_http_on_the_store(both, photos):
    """The API's image side on the store: text to image, upload, thumbnail, collapse and the
    duplicates job, each answering as the library does."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from semsearch.search_api.app import create_app
    from tests.images.conftest import jpeg_bytes
    from tests.search_api.conftest import API_KEY
    from tests.search_api.test_images_api import duplicates_job, upload

    _, store, tree = both
    settings = store.settings.model_copy(deep=True)
    settings.api_key = SecretStr(API_KEY)  # a duplicates scan needs the write key
    with TestClient(create_app(None, settings)) as c:
        r = c.post("/v1/search", json={"query": "a cup of coffee", "mode": "image", "k": 4})
        assert r.status_code == 200, r.text
        assert [h["id"] for h in r.json()["hits"]] == [h.id for h in store.search("a cup of coffee", mode="image", k=4).hits]
        r = upload(c, jpeg_bytes(photos["rocket"], quality=92), k=3)
        assert r.status_code == 200, r.text
        res = r.json()
        assert res["channels"] == ["image", "phash"] and res["hits"][0]["id"] == "photos/rocket.jpg"
        assert res["hits"][0]["hamming"]["phash"] <= 2
        thumb = c.get(res["hits"][0]["image_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"].startswith("image/")
        r = c.post("/v1/search", json={"query": "a photo", "mode": "image", "k": 14, "collapse": True})
        kept = [h for h in r.json()["hits"] if h["id"] in ASTRO]
        assert len(kept) == 1 and set(kept[0]["duplicates"]) == ASTRO - {kept[0]["id"]}
        gauges = c.get("/metrics")  # the index gauges come from the store, not a directory
        assert gauges.status_code == 200 and "semsearch_documents 14.0" in gauges.text
        job = duplicates_job(c, {"max_distance": 10})
        assert job["status"] == "done", job
        assert [sorted(g) for g in job["result"]["groups"]] == [sorted(ASTRO)]
