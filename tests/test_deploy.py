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


def test_services_and_elasticsearch(compose):
    assert {"elasticsearch", "semsearch", "semsearch-gpu"} <= set(compose["services"])
    es = compose["services"]["elasticsearch"]
    # the official image, same major version as the Python client (pyproject's es extra)
    assert _interpolate(es["image"], {}).startswith("elasticsearch:8.")
    assert es["environment"]["discovery.type"] == "single-node"
    assert "-Xmx" in es["environment"]["ES_JAVA_OPTS"] and es["mem_limit"]
    assert any(v.endswith(":/usr/share/elasticsearch/data") for v in es["volumes"])
    assert "es-data" in compose["volumes"]
    hc = es["healthcheck"]
    assert "_cluster/health" in " ".join(hc["test"]) and hc["retries"] >= 3


def test_api_service_waits_for_healthy_elasticsearch(compose):
    for name in ("semsearch", "semsearch-gpu"):
        svc = compose["services"][name]
        assert svc["build"]["dockerfile"] == "Dockerfile"
        assert svc["depends_on"] == {"elasticsearch": {"condition": "service_healthy"}}
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
        assert any(v.startswith("semsearch-index:/data/index") for v in svc["volumes"])
        env = svc["environment"]
        assert env["SEMSEARCH_LEXICAL__BACKEND"] == "elasticsearch"
        assert env["SEMSEARCH_LEXICAL__ELASTICSEARCH__URL"] == "http://elasticsearch:9200"
        assert env["SEMSEARCH_API_KEY"].startswith("${SEMSEARCH_API_KEY:?")
        # the ES password is required on both sides and is the same variable
        assert env["SEMSEARCH_LEXICAL__ELASTICSEARCH__PASSWORD"].startswith("${ELASTIC_PASSWORD:?")
    assert compose["services"]["elasticsearch"]["environment"]["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD:?")


def test_gpu_profile(compose):
    gpu = compose["services"]["semsearch-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert "gpu" in gpu["build"]["args"]["EXTRAS"].split(",")
    (dev,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert dev["driver"] == "nvidia" and "gpu" in dev["capabilities"]
    assert gpu["environment"]["SEMSEARCH_VECTOR__FAISS__GPU"] == "always"
    assert "profiles" not in compose["services"]["semsearch"]


def test_env_wiring_is_valid_settings(compose, monkeypatch):
    """Every SEMSEARCH_* variable the services set is a real setting with a valid value, and
    the required ones really are required."""
    from semsearch.config import Settings

    given = {"SEMSEARCH_API_KEY": "k", "ELASTIC_PASSWORD": "p"}
    for name in ("semsearch", "semsearch-gpu"):
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
        assert s.lexical.backend == "elasticsearch"
        assert s.lexical.elasticsearch.password.get_secret_value() == "p"
        assert s.api_key.get_secret_value() == "k"


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
