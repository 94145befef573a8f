"""Images in the Elasticsearch store: search by example image over the stored perceptual
hashes (``bit`` vectors, Hamming distance) and near-duplicate groups, checked against the
local index over the same image tree (real photographs, a resized and a mirrored copy)."""

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
    """(local, store, tree): the same image tree indexed into a local index (hash channels)
    and into the store through ``semsearch index``'s ingest."""
    import uuid

    from elasticsearch import Elasticsearch

    from semsearch.images.channels import image_channels
    from semsearch.indexer.index import Index
    from semsearch.indexer.pipeline import Pipeline

    tmp = tmp_path_factory.mktemp("store-images")
    tree = make_image_tree(tmp, photos)
    local_settings = make_settings(tmp)
    with Index.create(tmp / "idx", local_settings) as idx:
        Pipeline(idx, image_channels(local_settings, clip=False), local_settings).run([tree])
    name = f"semsearch-test-img-{uuid.uuid4().hex[:10]}"
    s = store_settings(es_url, name)
    s.images.roots = [tmp]
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
    with pytest.raises(BadInput, match="no image channel 'image'"):
        store.search_by_image(tree / "photos/coffee.jpg", channels=["image"])


def test_duplicate_groups_match_the_local_index(both):
    local, store, _ = both
    res = store.duplicates(10)
    assert res.groups == [sorted(ASTRO)] and res.images == 14
    assert res.groups == local.duplicates(10).groups
    assert sorted(res.pairs) == sorted(local.duplicates(10).pairs)
    rules = {(a, b): r for a, b, _, r in res.pairs}
    assert rules[("photos/astronaut.jpg", "photos/astronaut_flip.png")] == "mirrored"
    assert store.duplicates(10, mirrored=False).groups == [["photos/astronaut.jpg", "photos/astronaut_small.jpg"]]
    with pytest.raises(BadInput, match="CLIP"):
        store.duplicates(10, min_cosine=0.9)
