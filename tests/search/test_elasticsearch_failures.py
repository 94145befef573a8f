"""Failure behaviour with a real Elasticsearch that is stopped mid-test: a second server is
started on its own port (.ci/elasticsearch.sh with ES_PORT/ES_WORK) and stopped while the
index is in use."""

import os
import socket
import subprocess

import pytest

from semsearch.errors import BackendUnavailable, ChannelFailed
from semsearch.indexer.index import Index
from semsearch.indexer.pipeline import Pipeline, TextChannel
from semsearch.search import Searcher
from tests.conftest import REPO, es_lexical_settings

pytestmark = pytest.mark.integration
SCRIPT = REPO / ".ci" / "elasticsearch.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def doomed_es(es_url):
    """A second Elasticsearch, for tests that stop it. Yields (url, stop)."""
    env = dict(os.environ, ES_PORT=str(_free_port()), ES_WORK="/tmp/semsearch-es-failtest")

    def script(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), cmd], env=env, capture_output=True,
                              text=True, timeout=240)

    started = script("start")
    if started.returncode != 0:
        pytest.fail(f"could not start a second Elasticsearch: {started.stderr[-2000:]}")
    url = started.stdout.strip().splitlines()[-1]
    yield url, lambda: script("stop")
    script("stop")


def test_search_when_the_server_goes_down(tmp_path, doomed_es, tiny_jsonl, minilm, settings):
    url, stop = doomed_es
    settings.lexical = es_lexical_settings(url, "semsearch-doomed")
    with Index.create(tmp_path / "ix", settings) as idx:
        report = Pipeline(idx, [TextChannel(minilm)], settings).run([tiny_jsonl])
        assert report.indexed == 12 and report.rejected == []
    idx = Index.open(tmp_path / "ix", settings)
    try:
        searcher = Searcher(idx, settings, encoder=minilm)
        healthy = searcher.search("bees pollinate crops", k=5, mode="hybrid")
        assert not healthy.degraded and healthy.hits[0].id == "d11"
        assert set(healthy.hits[0].channels) == {"lexical", "dense"}

        assert stop().returncode == 0  # the server goes away mid-test

        settings.search.on_channel_failure = "fail"
        with pytest.raises(ChannelFailed) as ei:
            searcher.search("bees pollinate crops", k=5, mode="hybrid")
        assert ei.value.channel == "lexical" and url in str(ei.value)

        settings.search.on_channel_failure = "degrade"
        res = searcher.search("bees pollinate crops", k=5, mode="hybrid")
        assert res.degraded and set(res.failed_channels) == {"lexical"}
        assert url in res.failed_channels["lexical"]
        assert res.hits[0].id == "d11" and set(res.hits[0].channels) == {"dense"}
        with pytest.raises(ChannelFailed):  # a lexical-only search has nothing to degrade to
            searcher.search("bees", k=5, mode="lexical")

        with pytest.raises(BackendUnavailable, match="unreachable"):
            idx.lexical.ping()
    finally:
        idx.close()
    with pytest.raises(BackendUnavailable, match=url):  # down at start: writing fails clearly
        with Index.create(tmp_path / "ix", settings) as idx:
            idx.write([idx.get(["d1"])["d1"].model_copy(update={"text": "changed"})],
                      {"dense": minilm.encode(["changed"])})
            idx.sync()
