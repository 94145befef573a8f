from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def fresh_cross_encoder():
    """The MiniLM backbone with a fresh 1-label head (the training starting point), CPU."""
    from semsearch.rerank.cross_encoder import load_cross_encoder

    return load_cross_encoder(None, device="cpu", max_length=64)
