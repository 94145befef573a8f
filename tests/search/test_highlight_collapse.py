import numpy as np

from semsearch.documents import Hit
from semsearch.search.collapse import collapse, near_by_cosine, near_by_hash
from semsearch.search.highlight import query_terms, snippet


def test_highlights_match_stems_not_substrings():
    terms = query_terms("vaccines training")
    text = "A vaccine trains the immune system; vaccination and retraining differ."
    s = snippet(text, terms)
    # Snowball conflates vaccine/vaccination ("vaccin"); "retraining" is not "train"
    assert [s.text[a:b] for a, b in s.highlights] == ["vaccine", "trains", "vaccination"]


def test_snippet_window_holds_the_densest_matches():
    text = "filler " * 100 + "black holes bend light; black holes evaporate" + " filler" * 100
    s = snippet(text, query_terms("black holes"), max_chars=80)
    assert len(s.text) <= 80 and s.truncated_start and s.truncated_end
    assert [s.text[a:b].lower() for a, b in s.highlights] == ["black", "holes", "black", "holes"]


def test_collapse_keeps_the_best_of_each_group():
    hits = [Hit(id=i, score=1.0 - n / 10, rank=n + 1) for n, i in enumerate("abcd")]
    v = np.array([[1, 0], [0.999, 0.0447], [0, 1], [1, 0]], dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    out = collapse(hits, near_by_cosine(v, threshold=0.95))
    assert [h.id for h in out] == ["a", "c"]
    assert out[0].extra["duplicates"] == ["b", "d"] and "duplicates" not in out[1].extra
    v[3] = 0  # no vector: near nothing, kept
    assert [h.id for h in collapse(hits, near_by_cosine(v, threshold=0.95))] == ["a", "c", "d"]


def test_hash_collapse_folds_within_the_distance_and_mirrored_copies():
    from semsearch.images.hashing import pack

    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (4, 64), dtype=np.uint8)
    bits[1] = bits[0]
    bits[1, :3] ^= 1  # 3 bits from a
    mirrored = pack(rng.integers(0, 2, (4, 64), dtype=np.uint8))
    mirrored[0] = pack(bits[3:4])[0]  # d is a flipped a
    hits = [Hit(id=i, score=1.0 - n / 10, rank=n + 1) for n, i in enumerate("abcd")]
    codes = pack(bits)
    assert [h.id for h in collapse(hits, near_by_hash(codes, None, 3))] == ["a", "c", "d"]
    assert [h.id for h in collapse(hits, near_by_hash(codes, None, 2))] == ["a", "b", "c", "d"]
    out = collapse(hits, near_by_hash(codes, mirrored, 3))
    assert [h.id for h in out] == ["a", "c"] and out[0].extra["duplicates"] == ["b", "d"]


def test_fast_matches_equal_stemming_every_word():
    """matches() stems only words that share a query stem's first characters; it must find
    exactly what stemming every word finds, irregular forms and odd casing included."""
    import Stemmer

    from semsearch.search.highlight import WORD, matches, query_terms

    stem = Stemmer.Stemmer("english").stemWord
    text = ("Dying, lying and tying: the skies were SKIING-blue. Vaccines vaccinated the vaccination "
            "queue; a revaccinated İstanbul relational hopeful hoping agreed happily. Happy bees!")
    # "İ" lowercases to two characters (the pattern path); without it, the str.find scan;
    # words glued by "_" or digits are one word, prefixes inside words are not word starts
    plain = text.replace("İstanbul", "Istanbul") + " x_vaccine 2bees bees_ beebees hopehope agreeagree"
    # stems of one or two characters (whole prefixes), digits, and "-ying" words in "ie"
    short = ("CD4 cells and CDs: cd ii II iii pH ph 19 1990 2019 19s 1.9 is as vying vie bye by "
             "cd_ii 19_9 hying hie")
    checked = 0
    for t in (text, plain, short, plain + " " + short):
        for query in ("die lie tie", "skies ski", "vaccines", "relations hope agree happy", "bee",
                      "cd ii", "ph 19", "vie hie bye 1990"):
            terms = query_terms(query)
            slow = [(m.start(), m.end()) for m in WORD.finditer(t) if stem(m.group().lower()) in terms]
            assert matches(t, terms) == slow, (query, t[:20])
            checked += bool(slow)
    assert checked == 2 * 5 + 3 + 5 + 3  # every query matches something in the texts made for it
