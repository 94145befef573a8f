"""semsearch.metrics in prometheus-client's multiprocess mode (``serve --workers N``): the
exposition sums every process, and the index gauges of dead processes are forgotten."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import subprocess_env

pytest.importorskip("prometheus_client")

SET = ("from semsearch import metrics; metrics.observe_request('/x', 'GET', 200, '-', 0.01); "
       "metrics.set_segments({n}); print('set', flush=True)")


def test_exposition_sums_the_processes_and_forgets_dead_ones_gauges(tmp_path):
    env = subprocess_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    live = subprocess.Popen([sys.executable, "-c", SET.format(n=7) + "; import sys; sys.stdin.read()"],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "set"
        # a process that sets the gauge later and dies without saying so (a killed worker)
        dead = subprocess.run([sys.executable, "-c", SET.format(n=3)], env=env, check=True,
                              capture_output=True, text=True)
        assert dead.stdout.strip() == "set"
        dead_files = [p.name for p in tmp_path.iterdir() if p.name.startswith("gauge_live")]
        assert len(dead_files) == 2
        read = "import sys; from semsearch import metrics; sys.stdout.write(metrics.exposition()[0].decode())"
        out = subprocess.run([sys.executable, "-c", read], env=env, check=True, capture_output=True,
                             text=True).stdout
    finally:
        live.stdin.close()
        live.wait(30)
    # counters and histograms: both processes, the dead one included
    assert re.search(r'^semsearch_requests_total\{endpoint="/x",method="GET",mode="-",status="200"\} 2\.0$',
                     out, re.M), out
    assert re.search(r'^semsearch_request_seconds_count\{endpoint="/x",mode="-"\} 2\.0$', out, re.M), out
    # the gauge: one series (no pid label), the value of the live process, not the dead one's
    assert re.findall(r"^semsearch_segments(\{.*\})? (\S+)$", out, re.M) == [("", "7.0")], out
    left = {p.name for p in tmp_path.iterdir() if p.name.startswith("gauge_live")}
    assert len(left) == 2 and not set(dead_files) <= left  # the dead one's went, the reader's came
