"""Fixtures of the API tests: a tiny real index (MiniLM + FAISS + BM25) in a tmp dir, the
app on it (TestClient), and a real ``semsearch serve`` process on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import semsearch_cmd, subprocess_env

API_KEY = "test-key-0123456789abcdef"


@pytest.fixture
def index_dir(tmp_path: Path, tiny_jsonl: Path, minilm, settings) -> Path:
    from semsearch.indexer.index import Index
    from semsearch.indexer.pipeline import Pipeline, TextChannel

    path = tmp_path / "index"
    with Index.create(path, settings) as idx:
        Pipeline(idx, [TextChannel(minilm)], settings).run([tiny_jsonl])
    return path


@pytest.fixture
def api_settings(settings):
    from pydantic import SecretStr

    settings.api_key = SecretStr(API_KEY)
    return settings


@pytest.fixture
def client(index_dir: Path, api_settings, minilm) -> Iterator:
    from fastapi.testclient import TestClient

    from semsearch.search_api.app import create_app

    app = create_app(index_dir, api_settings, encoder=minilm)
    with TestClient(app) as c:
        yield c


WRITE = {"X-API-Key": API_KEY}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``semsearch serve`` subprocess on 127.0.0.1 and a random free port."""

    def __init__(self, index: Path, log: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._fh = open(log, "ab")
        self.proc = subprocess.Popen(
            semsearch_cmd("serve", "--index", str(index), "--port", str(self.port), *args),
            env=subprocess_env(SEMSEARCH_API_KEY=API_KEY, SEMSEARCH_TEXT_ENCODER__DEVICE="cpu", **env),
            stdout=self._fh, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready after {timeout}s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no shutdown code runs
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._fh.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    servers: list[Server] = []

    def start(index: Path, *args: str, **env: str) -> Server:
        s = Server(index, tmp_path / f"server-{len(servers)}.log", *args, **env)
        servers.append(s)
        s.wait_ready()
        return s

    yield start
    for s in servers:
        s.stop()
