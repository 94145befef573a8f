"""`semsearch serve --workers 2` on the Elasticsearch store: no index directory, no lock,
no local files; a write through one request is read by the next, whichever worker answers."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import pytest

from semsearch.collection import Collection
from tests.conftest import semsearch_cmd, store_settings, subprocess_env

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_workers_keeps_no_local_state(tmp_path, es_url, es_names, minilm, tiny_docs):
    name = es_names("serve")
    s = store_settings(es_url, name)
    with Collection.create(None, s, encoder=minilm) as col:
        col.upsert(tiny_docs, wait_for=True)
    port = _free_port()
    env = subprocess_env(SEMSEARCH_STORE__BACKEND="elasticsearch",
                         SEMSEARCH_STORE__ELASTICSEARCH__URL=es_url,
                         SEMSEARCH_STORE__ELASTICSEARCH__INDEX=name,
                         SEMSEARCH_STORE__ELASTICSEARCH__ANALYZER="semsearch_en",
                         SEMSEARCH_STORE__ELASTICSEARCH__REPLICAS="0",
                         SEMSEARCH_TEXT_ENCODER__DEVICE="cpu",
                         SEMSEARCH_TEXT_ENCODER__QUERY_BACKEND="torch",
                         SEMSEARCH_API_KEY="secret")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.Popen([*semsearch_cmd("serve", "--port", str(port), "--workers", "2")],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "server not ready in 240 s"
            time.sleep(1)
        r = httpx.post(f"{url}/v1/search", json={"query": "bees pollinate crops", "k": 3}, timeout=30)
        assert r.status_code == 200 and r.json()["hits"][0]["id"] == "d11"
        doc = {"_id": "new1", "title": "Beekeeping", "text": "Keepers harvest honey from hives."}
        w = httpx.post(f"{url}/v1/documents", json={"documents": [doc], "wait": True},
                       headers={"X-API-Key": "secret"}, timeout=60)
        assert w.status_code == 200 and w.json()["searchable"]
        for _ in range(4):  # read-your-writes from whichever worker answers
            r = httpx.post(f"{url}/v1/search", json={"query": "beekeeping honey hives", "k": 1,
                                                     "mode": "lexical"}, timeout=30)
            assert r.json()["hits"][0]["id"] == "new1"
        assert httpx.get(f"{url}/v1/documents/new1", timeout=10).json()["title"] == "Beekeeping"
        assert list(cwd.iterdir()) == []  # no lock file, no index directory
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
