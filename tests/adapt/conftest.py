from __future__ import annotations

import json
from pathlib import Path

import pytest

TOPICS = [
    ("Photosynthesis in green plants", "chlorophyll", "sunlight", "leaves"),
    ("Volcanic eruptions and magma", "lava", "crater", "ash"),
    ("Honey bee colonies", "hive", "pollen", "queen"),
    ("Ocean tides and the moon", "gravity", "coast", "water"),
    ("Antibiotic resistance in bacteria", "penicillin", "infection", "mutation"),
    ("Glaciers and ice ages", "ice", "valley", "climate"),
    ("Coffee roasting chemistry", "beans", "aroma", "heat"),
    ("Jazz improvisation", "saxophone", "rhythm", "chords"),
    ("Marathon training plans", "running", "endurance", "miles"),
    ("Black holes and event horizons", "gravity", "light", "stars"),
    ("Sourdough bread baking", "yeast", "flour", "starter"),
    ("Electric car batteries", "lithium", "charging", "range"),
    ("Ancient Roman aqueducts", "arches", "water", "engineering"),
    ("Chess opening theory", "pawn", "bishop", "gambit"),
    ("Coral reef bleaching", "algae", "temperature", "reef"),
    ("Vaccines and immune memory", "antibodies", "cells", "virus"),
    ("Wind turbine design", "blades", "generator", "wind"),
    ("Origami folding techniques", "paper", "crease", "crane"),
    ("Sleep cycles and dreaming", "brain", "rem", "night"),
    ("Desert plant survival", "cactus", "drought", "spines"),
    ("Medieval castle defenses", "walls", "moat", "siege"),
    ("Solar panel efficiency", "silicon", "photons", "energy"),
    ("Octopus intelligence", "tentacles", "camouflage", "puzzles"),
    ("Tea cultivation in highlands", "leaves", "harvest", "oxidation"),
]


def topic_docs() -> list[dict]:
    out = []
    for i, (title, a, b, c) in enumerate(TOPICS):
        text = (f"This article describes {title.lower()} in some detail for readers. "
                f"The role of {a} is explained first with several simple examples. "
                f"Researchers have long studied how {b} affects the whole process over time. "
                f"Finally the connection between {c} and {a} is discussed with care.")
        out.append({"_id": f"t{i:02d}", "title": title, "text": text, "metadata": {}})
    return out


@pytest.fixture
def topic_index(tmp_path: Path, minilm, settings):
    """An index of 24 four-sentence documents (embedded BM25 + MiniLM), closed; its path."""
    from semsearch.indexer.index import Index
    from semsearch.indexer.pipeline import Pipeline, TextChannel

    src = tmp_path / "topics.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in topic_docs()), encoding="utf-8")
    path = tmp_path / "index"
    with Index.create(path, settings) as idx:
        Pipeline(idx, [TextChannel(minilm)], settings).run([src])
    return path


#: recorded search defaults that are easy to recognise in results: RRF with k=7, lexical only
RRF7_LEXICAL_ONLY = {"method": "rrf", "rrf_k": 7, "weights": {"lexical": 1.0, "dense": 0.0}}


def assert_searches_use_rrf7_lexical_only(searcher, query: str) -> None:
    """``searcher`` (a Searcher or a collection) searches hybrid with :data:`RRF7_LEXICAL_ONLY`
    recorded as its defaults: the lexical order with RRF scores; a request's own fusion wins."""
    lexical = [h.id for h in searcher.search(query, mode="lexical", k=5).hits]
    hybrid = searcher.search(query, mode="hybrid", k=5)
    assert [h.id for h in hybrid.hits][: len(lexical)] == lexical
    assert hybrid.hits[0].score == pytest.approx(1.0 / (7 + 1))
    own = searcher.search(query, mode="hybrid", k=5, fusion="convex", weights={"lexical": 0.5, "dense": 0.5})
    assert own.hits[0].score != pytest.approx(1.0 / 8)
