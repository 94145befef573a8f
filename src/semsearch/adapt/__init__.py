"""``semsearch adapt``: fit the engine to a corpus without labels (pseudo-queries mined from
the indexed documents, judged informatively), choosing fusion, a fine-tuned dense encoder
and an optional reranker on held-out pseudo-queries, and recording the choices in the index."""
