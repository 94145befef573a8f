"""Query planning, rank fusion and result assembly."""

from semsearch.search.engine import Searcher

__all__ = ["Searcher"]
