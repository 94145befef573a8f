"""compose.yaml and the Dockerfile, checked without Docker (none runs here): structure,
healthchecks, start order, env wiring, and that the image runs real entry points/options."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
import yaml

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

VAR = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((REPO / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _interpolate(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name, op, arg = m.groups()
        if name in env:
            return env[name]
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return VAR.sub(sub, value)


ES_NODES = ("es01", "es02", "es03")
API = ("semsearch", "semsearch-2")


def test_three_node_elasticsearch_cluster(compose):
    services = compose["services"]
    assert {*ES_NODES, *API, "certs", "semsearch-gpu"} <= set(services)
    for name in ES_NODES:
        es = services[name]
        # the official image, same major version as the Python client (pyproject's es extra)
        assert _interpolate(es["image"], {}).startswith("elasticsearch:8.")
        env = es["environment"]
        assert env["node.name"] == name and "discovery.type" not in env
        assert env["discovery.seed_hosts"].split(",") == list(ES_NODES)
        assert env["cluster.initial_master_nodes"].split(",") == list(ES_NODES)
        assert env["xpack.security.enabled"] == "true"
        # security on a multi-node cluster needs TLS between nodes: per-node certificates
        assert env["xpack.security.transport.ssl.enabled"] == "true"
        assert env["xpack.security.transport.ssl.certificate"] == f"certs/{name}/{name}.crt"
        assert env["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD:?")
        assert "-Xmx" in env["ES_JAVA_OPTS"] and es["mem_limit"]
        assert f"{name}-data:/usr/share/elasticsearch/data" in es["volumes"]
        assert f"{name}-data" in compose["volumes"]
        assert es["depends_on"] == {"certs": {"condition": "service_completed_successfully"}}
        hc = es["healthcheck"]
        assert "_cluster/health" in " ".join(hc["test"]) and hc["retries"] >= 3
    certs = " ".join(services["certs"]["command"])
    assert all(f"name: {n}" in certs for n in ES_NODES) and "elasticsearch-certutil" in certs


def test_two_stateless_api_replicas_wait_for_the_cluster(compose):
    for name in API:
        svc = compose["services"][name]
        assert svc["build"]["dockerfile"] == "Dockerfile"
        assert svc["depends_on"] == {n: {"condition": "service_healthy"} for n in ES_NODES}
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
        assert "volumes" not in svc  # stateless: nothing local
        assert "--index" not in svc["command"] and "--workers" in svc["command"]
        env = svc["environment"]
        assert env["SEMSEARCH_STORE__BACKEND"] == "elasticsearch"
        assert env["SEMSEARCH_STORE__ELASTICSEARCH__URL"].split(",") == [f"http://{n}:9200" for n in ES_NODES]
        assert env["SEMSEARCH_API_KEY"].startswith("${SEMSEARCH_API_KEY:?")
        assert env["SEMSEARCH_STORE__ELASTICSEARCH__PASSWORD"].startswith("${ELASTIC_PASSWORD:?")
    ports = [_interpolate(compose["services"][n]["ports"][0], {}) for n in API]
    assert len(set(ports)) == 2


def test_serve_command_of_the_replicas_is_real(compose):
    import typer.main

    from semsearch.cli import app

    cmd = [_interpolate(a, {}) for a in compose["services"]["semsearch"]["command"]]
    sub = typer.main.get_command(app).commands[cmd[1]]
    opts = {o for p in sub.params for o in p.opts}
    assert {a for a in cmd[2:] if a.startswith("--")} <= opts
    assert not [o for p in sub.params if p.required for o in p.opts]  # --index is optional
    assert int(cmd[cmd.index("--workers") + 1]) >= 1


def test_gpu_profile(compose):
    gpu = compose["services"]["semsearch-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert "gpu" in gpu["build"]["args"]["EXTRAS"].split(",")
    (dev,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert dev["driver"] == "nvidia" and "gpu" in dev["capabilities"]
    assert gpu["environment"]["SEMSEARCH_VECTOR__FAISS__GPU"] == "always"
    assert any(v.startswith("semsearch-index:/data/index") for v in gpu["volumes"])
    assert "profiles" not in compose["services"]["semsearch"]


def test_env_wiring_is_valid_settings(compose, monkeypatch):
    """Every SEMSEARCH_* variable the services set is a real setting with a valid value, and
    the required ones really are required."""
    from semsearch.config import Settings

    given = {"SEMSEARCH_API_KEY": "k", "ELASTIC_PASSWORD": "p"}
    for name in (*API, "semsearch-gpu"):
        env = compose["services"][name]["environment"]
        for var in given:
            with pytest.raises(KeyError, match=var):
                {k: _interpolate(str(v), {x: y for x, y in given.items() if x != var}) for k, v in env.items()}
        resolved = {k: _interpolate(str(v), given) for k, v in env.items()}
        for k in list(os.environ):
            if k.startswith("SEMSEARCH_"):
                monkeypatch.delenv(k)
        for k, v in resolved.items():
            monkeypatch.setenv(k, v)
        s = Settings()  # raises on an unknown variable (extra="forbid") or a bad value
        assert s.api_key.get_secret_value() == "k"
        if name == "semsearch-gpu":
            assert s.lexical.backend == "elasticsearch"
            assert s.lexical.elasticsearch.password.get_secret_value() == "p"
        else:
            assert s.store.backend == "elasticsearch"
            assert (s.store.elasticsearch.shards, s.store.elasticsearch.replicas) == (3, 1)
            assert s.store.elasticsearch.password.get_secret_value() == "p"


def test_dockerfile_runs_the_real_entry_point_and_options(dockerfile):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert dockerfile[0] == "FROM python:3.11-slim"
    (cmd,) = [json.loads(line[len("CMD "):]) for line in dockerfile if line.startswith("CMD ")]
    assert cmd[0] in pyproject["project"]["scripts"]
    assert pyproject["project"]["scripts"][cmd[0]] == "semsearch.cli:main"

    import typer.main

    from semsearch.cli import app

    group = typer.main.get_command(app)
    sub = group.commands[cmd[1]]
    opts = {o for p in sub.params for o in p.opts}
    flags = [a for a in cmd[2:] if a.startswith("--")]
    assert set(flags) <= opts, f"{flags} not all in {sorted(opts)}"
    required = {o for p in sub.params if p.required for o in p.opts}
    assert required <= set(flags)

    (install,) = [line for line in dockerfile if "pip install" in line and ".[" in line]
    arg = {line.split()[1].split("=")[0]: line.split("=", 1)[1] for line in dockerfile if line.startswith("ARG ")}
    extras = arg["EXTRAS"].split(",") + ["gpu"]
    assert set(extras) <= set(pyproject["project"]["optional-dependencies"])
    assert "${EXTRAS}" in install
    assert any("readyz" in line for line in dockerfile if line.startswith(("HEALTHCHECK", "CMD [\"python\"")))
