"""Settings from a TOML or .env file (SEMSEARCH_CONFIG / --config); the environment wins."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from semsearch import config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("SEMSEARCH_CONFIG", raising=False)
    monkeypatch.delenv("SEMSEARCH_API__MAX_K", raising=False)


def test_toml_file_is_read_and_env_vars_override_it(tmp_path, monkeypatch):
    f = tmp_path / "s.toml"
    f.write_text('[api]\nmax_k = 43\nmax_depth = 7\n[log]\nformat = "json"\n')
    s = config.load(f)
    assert (s.api.max_k, s.api.max_depth, s.log.format) == (43, 7, "json")
    monkeypatch.setenv("SEMSEARCH_API__MAX_K", "9")
    s = config.load(f)
    assert (s.api.max_k, s.api.max_depth) == (9, 7)  # env beats the file, per key
    monkeypatch.setenv("SEMSEARCH_CONFIG", str(f))
    assert config.Settings().api.max_depth == 7  # the variable names the file too


def test_dotenv_file_reads_only_semsearch_variables(tmp_path, monkeypatch):
    f = tmp_path / "prod.env"
    f.write_text("SEMSEARCH_API__MAX_K=42\nSEMSEARCH_LOG__LEVEL=INFO\nPOSTGRES_PASSWORD=x\n")
    s = config.load(f)
    assert (s.api.max_k, s.log.level) == (42, "INFO")
    monkeypatch.setenv("SEMSEARCH_API__MAX_K", "5")
    assert config.load(f).api.max_k == 5


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        config.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[api\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        config.load(bad)
    typo = tmp_path / "typo.env"
    typo.write_text("SEMSEARCH_API__MAX_KK=3\n")
    with pytest.raises(ValidationError, match="max_kk"):
        config.load(typo)
