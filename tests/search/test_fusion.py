"""Fusion against hand-computed cases."""

import math

import pytest

from semsearch.errors import BadInput
from semsearch.search.fusion import convex, fuse, rrf

LEX = [("a", 10.0), ("b", 6.0), ("c", 2.0)]
DENSE = [("c", 0.9), ("a", 0.5), ("d", 0.4)]


def test_rrf_hand_computed():
    fused = rrf({"lexical": LEX, "dense": DENSE}, k=60)
    scores = {f.id: f.score for f in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["b"] == pytest.approx(1 / 62)
    assert scores["d"] == pytest.approx(1 / 63)
    assert [f.id for f in fused] == ["a", "c", "b", "d"]


def test_rrf_weights_and_k():
    fused = rrf({"lexical": LEX, "dense": DENSE}, k=1, weights={"lexical": 0.0, "dense": 2.0})
    scores = {f.id: f.score for f in fused}
    assert scores["c"] == pytest.approx(2 / 2)
    assert scores["a"] == pytest.approx(2 / 3)
    assert scores["b"] == 0.0
    assert fused[0].id == "c"


def test_convex_minmax_hand_computed():
    fused = convex({"lexical": LEX, "dense": DENSE}, weights={"lexical": 0.5, "dense": 0.5})
    scores = {f.id: f.score for f in fused}
    # lexical minmax: a=1, b=0.5, c=0 ; dense minmax: c=1, a=0.2, d=0
    assert scores["a"] == pytest.approx(0.5 * 1 + 0.5 * 0.2)
    assert scores["b"] == pytest.approx(0.5 * 0.5 + 0.5 * 0)
    assert scores["c"] == pytest.approx(0.5 * 0 + 0.5 * 1)
    assert scores["d"] == pytest.approx(0.0)
    assert [f.id for f in fused] == ["a", "c", "b", "d"]


def test_convex_zscore_hand_computed():
    fused = convex({"lexical": LEX, "dense": DENSE}, normalization="zscore")
    scores = {f.id: f.score for f in fused}
    lm, ls = 6.0, math.sqrt(((10 - 6) ** 2 + 0 + (2 - 6) ** 2) / 3)
    dm = (0.9 + 0.5 + 0.4) / 3
    ds = math.sqrt(((0.9 - dm) ** 2 + (0.5 - dm) ** 2 + (0.4 - dm) ** 2) / 3)
    z = lambda v, m, s: (v - m) / s  # noqa: E731
    assert scores["a"] == pytest.approx(z(10, lm, ls) + z(0.5, dm, ds))
    # d is missing from lexical: it gets lexical's lowest z-score
    assert scores["d"] == pytest.approx(z(2, lm, ls) + z(0.4, dm, ds))
    assert scores["b"] == pytest.approx(z(6, lm, ls) + z(0.4, dm, ds))


def test_every_hit_explains_its_channels():
    fused = fuse({"lexical": LEX, "dense": DENSE}, method="rrf")
    by_id = {f.id: f for f in fused}
    assert by_id["a"].channels == {"lexical": (1, 10.0), "dense": (2, 0.5)}
    assert by_id["d"].channels == {"dense": (3, 0.4)}


def test_constant_scores_and_empty_channels():
    fused = convex({"lexical": [("x", 3.0), ("y", 3.0)], "dense": []})
    assert {f.id for f in fused} == {"x", "y"}
    # all-equal scores normalise to 1 (weight 1 by default); an empty channel adds nothing
    assert all(f.score == pytest.approx(1.0) for f in fused)
    assert fuse({"lexical": [], "dense": []}) == []


def test_ties_are_broken_deterministically():
    a = rrf({"l": [("x", 1.0)], "d": [("y", 1.0)]})
    b = rrf({"d": [("y", 1.0)], "l": [("x", 1.0)]})
    assert [f.id for f in a] == [f.id for f in b] == ["x", "y"]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rrf({"l": LEX}, k=0), "RRF k must be"),
        (lambda: rrf({"l": LEX}, weights={"l": -1}), "weights must be >= 0"),
        (lambda: fuse({"l": LEX}, method="max"), "unknown fusion method"),
        (lambda: convex({"l": LEX}, normalization="rank"), "unknown normalisation"),
    ],
)
def test_bad_fusion_options(call, match):
    with pytest.raises(BadInput, match=match):
        call()
