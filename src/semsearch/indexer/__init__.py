"""Indexing: lexical and vector indexes, the index directory format and the bulk pipeline."""
