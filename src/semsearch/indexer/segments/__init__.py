"""Immutable index segments (Lucene-style): the derived data of a group of documents
(lexical postings, vectors, metadata columns), written once, searched through a snapshot of
the live segments, merged in the background. See segments/manager.py for the commit point."""
