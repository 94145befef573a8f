"""The store on a real three-node cluster (.ci/es-cluster.sh; SEMSEARCH_TEST_ES_CLUSTER=1):
an index of 3 primary shards with 1 replica each, a data node killed with SIGKILL while a
client searches and writes, and the whole cluster stopped under the REST API.

Bounded in time (each phase has a deadline) and on 127.0.0.1 only."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter

import pytest

from semsearch.collection import Collection
from semsearch.documents import Document
from tests.conftest import HashingEncoder, store_settings

pytestmark = pytest.mark.integration

#: how long a failing request may go on failing after a node dies before the test counts it
RETRY_WINDOW_S = 20.0


def _script(cluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(cluster["script"]), *args], capture_output=True,
                          text=True, timeout=timeout, env={"ES_KEEP_DATA": "1", **__import__("os").environ})


def _docs(prefix: str, n: int) -> list[Document]:
    words = ["bees", "honey", "magma", "crust", "chess", "opening", "solar", "panel", "yeast", "bread"]
    return [Document(id=f"{prefix}{i}", title=f"{words[i % 10]} {words[(i * 7) % 10]}",
                     text=" ".join(words[(i + j) % 10] for j in range(6)),
                     metadata={"n": i, "group": f"g{i % 4}"}) for i in range(n)]


@pytest.fixture
def cluster_store(es_cluster, es_names):
    names = []

    def make(**kw):
        name = es_names("cluster")
        names.append(name)
        s = store_settings(es_cluster["urls"], name, shards=3, replicas=1, request_timeout=10.0, **kw)
        return s, Collection.create(None, s, encoder=HashingEncoder())

    return make


def _wait_green(col, index: str | None = None, timeout: float = 120) -> str:
    health = col.conn.call("health", lambda c: c.cluster.health(
        index=index, wait_for_status="green", timeout=f"{int(timeout)}s"))
    return health["status"]


def test_three_primaries_one_replica_spread_over_three_nodes(es_cluster, cluster_store):
    s, col = cluster_store()
    try:
        col.upsert(_docs("a", 60), wait_for=True)
        assert _wait_green(col, col.alias) == "green"
        shards = col.conn.call("cat shards", lambda c: c.cat.shards(index=col.alias, format="json"))
        assert len(shards) == 6 and {x["state"] for x in shards} == {"STARTED"}
        assert Counter(x["prirep"] for x in shards) == {"p": 3, "r": 3}
        assert len({x["node"] for x in shards}) == es_cluster["nodes"] == 3
        res = col.search("bees honey", k=5, mode="hybrid")
        assert len(res.hits) == 5 and not res.degraded
        assert col.stats()["documents"] == 60
    finally:
        col.close()


def _node_not_master(col, cluster) -> int:
    master = col.conn.call("master", lambda c: c.cat.master(format="json"))[0]["node"]
    nodes = [int(x["name"].split("-")[1]) for x in col.conn.call(
        "nodes", lambda c: c.cat.nodes(format="json", h="name"))]
    return next(n for n in sorted(nodes, reverse=True) if f"node-{n}" != master)


def test_kill_a_data_node_while_searching_and_writing(es_cluster, cluster_store):
    s, col = cluster_store()
    col.upsert(_docs("seed", 200), wait_for=True)
    assert _wait_green(col, col.alias) == "green"
    victim = _node_not_master(col, es_cluster)

    stop = threading.Event()
    acked: list[str] = []
    search_log: list[tuple[float, str | None, bool]] = []  # (time, error, degraded)
    write_errors: list[tuple[float, str]] = []

    def searcher() -> None:
        while not stop.is_set():
            t = time.monotonic()
            try:
                res = col.search("bees honey magma", k=10, mode="hybrid")
                search_log.append((t, None, res.degraded))
            except Exception as e:  # noqa: BLE001 - recorded and judged below
                search_log.append((t, f"{type(e).__name__}: {e}", False))
            time.sleep(0.02)

    def writer() -> None:
        i = 0
        while not stop.is_set():
            batch = _docs(f"w{i}-", 5)
            t = time.monotonic()
            try:
                col.upsert(batch)
                acked.extend(d.id for d in batch)
            except Exception as e:  # noqa: BLE001 - an unacknowledged write may be lost
                write_errors.append((t, f"{type(e).__name__}: {e}"))
            i += 1
            time.sleep(0.02)

    threads = [threading.Thread(target=searcher), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    try:
        time.sleep(3)
        before = len(acked)
        killed_at = time.monotonic()
        r = _script(es_cluster, "kill", str(victim), timeout=30)
        assert r.returncode == 0, r.stderr
        time.sleep(RETRY_WINDOW_S + 5)  # the cluster runs on two nodes
        restart = _script(es_cluster, "start-node", str(victim), timeout=300)
        assert restart.returncode == 0, restart.stderr[-2000:]
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    # the cluster is green again, with the restarted node
    assert _wait_green(col, timeout=180) == "green"
    health = col.conn.call("health", lambda c: c.cluster.health())
    assert health["number_of_nodes"] == 3
    # searches kept answering: no error once the client's retry window has passed
    late = [(t - killed_at, e) for t, e, _ in search_log if e and t > killed_at + RETRY_WINDOW_S]
    assert not late, late[:3]
    after_kill = [x for x in search_log if x[0] > killed_at]
    assert len(after_kill) > 20 and sum(1 for x in after_kill if x[1] is None) > 0.9 * len(after_kill)
    # writes went on after the kill, and no acknowledged write was lost
    assert len(acked) > before
    col.refresh()
    found = col.get(acked)
    lost = sorted(set(acked) - set(found))
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    late_writes = [e for t, e in write_errors if t > killed_at + RETRY_WINDOW_S]
    assert not late_writes, late_writes[:3]
    print(f"\nkilled node-{victim}: {len(search_log)} searches "
          f"({sum(1 for x in search_log if x[1])} failed, {sum(1 for x in search_log if x[2])} partial), "
          f"{len(acked)} acknowledged writes, {len(write_errors)} failed writes, all acknowledged found")
    col.close()


def test_whole_cluster_down_api_answers_503_and_recovers(es_cluster, cluster_store):
    from fastapi.testclient import TestClient

    from semsearch.search_api.app import create_app

    s, col = cluster_store()
    col.upsert(_docs("api", 30), wait_for=True)
    col.close()
    s.search.on_channel_failure = "fail"
    app = create_app(None, s, encoder=HashingEncoder())
    query = {"query": "bees honey", "k": 3, "mode": "hybrid"}
    with TestClient(app) as client:
        assert client.post("/v1/search", json=query).status_code == 200
        assert client.get("/readyz").status_code == 200
        try:
            r = _script(es_cluster, "stop", timeout=120)
            assert r.returncode == 0, r.stderr
            down = client.post("/v1/search", json=query)
            assert down.status_code == 503
            err = down.json()["error"]
            assert err["type"] == "backend_unavailable" and "unreachable" in err["message"]
            assert "127.0.0.1:920" in err["message"]
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "unreachable" in ready.json()["error"]["message"]
        finally:
            r = _script(es_cluster, "start", timeout=400)
            assert r.returncode == 0, r.stderr[-2000:]
        deadline = time.monotonic() + 120  # the same app recovers by itself
        while True:
            got = client.post("/v1/search", json=query)
            if got.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert got.status_code == 200 and len(got.json()["hits"]) == 3
        assert client.get("/readyz").status_code == 200
