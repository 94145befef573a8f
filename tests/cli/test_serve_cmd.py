import subprocess

from tests.conftest import semsearch_cmd, subprocess_env


def test_serve_without_an_index_says_so(tmp_path):
    r = subprocess.run(semsearch_cmd("serve", "--index", str(tmp_path / "none"), "--port", "1"),
                       env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "no index at" in r.stderr and "does not exist" in r.stderr


def test_serve_is_listed_in_help():
    r = subprocess.run(semsearch_cmd("--help"), env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "serve" in r.stdout
