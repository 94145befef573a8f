"""Report generation end to end on a tiny dataset made in the test. The hashing encoder
stands in for the model: what is tested here is the runner and the report, not MiniLM."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from semsearch.errors import BadInput
from semsearch.eval import metrics as M
from semsearch.eval.api import run_eval
from semsearch.eval.datasets import read_trec_run

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "eval"
CONFIGS = ["lexical", "dense", "hybrid-rrf", "hybrid-convex", "image-by-text", "lexical-es"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from semsearch.config import Settings
    from tests.conftest import HashingEncoder
    from tests.eval.conftest import write_beir

    tmp = tmp_path_factory.mktemp("evalreport")
    ds = write_beir(tmp / "tinybeir")
    s = Settings()
    s.no_progress = True
    s.lexical.backend = "embedded"
    out = tmp / "report"
    outcome = run_eval(ds, "test", out, s, configs=CONFIGS, tune_on="train",
                       encoder=HashingEncoder(dim=256), command="semsearch eval (test)")
    return outcome, out


def test_results_json_schema_and_values(report):
    outcome, out = report
    data = json.loads((out / "results.json").read_text())
    for key in ("dataset", "split", "configs", "latency_ms", "versions", "settings"):
        assert key in data
    assert data["dataset"] == "tinybeir" and data["split"] == "test"
    ran = ["lexical", "dense", "hybrid-rrf", "hybrid-convex", "hybrid-rrf-tuned", "hybrid-convex-tuned"]
    assert list(data["configs"]) == ran
    for name in ran:
        assert set(data["configs"][name]) == {*M.METRICS, M.NO_RELEVANT}
        assert all(0.0 <= v <= 1.0 for v in data["configs"][name].values())
        assert data["latency_ms"][name]["p95"] >= data["latency_ms"][name]["p50"] > 0
    # the figures equal what ranx computes from the run files written beside them
    from tests.eval.conftest import TEST_QUERIES

    qrels = {q: dict.fromkeys(ds, 1) for q, _, ds in TEST_QUERIES}
    for name in ran:
        run = read_trec_run(out / "runs" / f"{name}.trec")
        assert M.means(M.per_query(qrels, run))["ndcg@10"] == pytest.approx(data["configs"][name]["ndcg@10"], abs=1e-6)
    # skipped configs say why
    assert "image" in data["skipped"]["image-by-text"]
    assert "Elasticsearch is not configured" in data["skipped"]["lexical-es"]
    # tuning on train, never on test; reported on test
    assert data["tuning"]["split"] == "train" and data["tuning"]["queries"] == 5
    assert data["config_params"]["hybrid-rrf-tuned"]["origin"].startswith("tuned on train")
    sig = data["significance"]
    assert sig["correction"] == "holm" and data["baseline"] == "lexical"
    assert set(sig["vs_baseline"]) == set(ran) - {"lexical"}
    assert data["dataset_info"]["sha256"] and data["command"] == "semsearch eval (test)"
    assert data["index"]["build_seconds"] > 0 and data["index"]["reused"] is False
    assert data["index"]["missing_judged"] == 0
    assert data["models"]["dense"]["name"] == "test/hashing-encoder"
    assert data["sanity"] is None  # not SciFact
    assert len(data["worst_queries"]) == 6


def test_markdown_and_html_hold_every_section(report):
    _, out = report
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for text in ("| config | ndcg@10", "hybrid-rrf-tuned", "Skipped `image-by-text`", "Holm",
                 "Worst queries", "Reproducibility", "ignore_identical_ids", "dataset_sha256"):
        assert text in md, text
    assert html.count("<svg") == 3
    # self-contained: no external references of any kind
    for ref in ('href="http', "href='http", "src=", "<script", "<link", "@import"):
        assert ref not in html, ref
    assert not re.search(r"url\((?!#)", html)  # only in-document references like url(#clip)
    for chart in ("metrics", "recall", "deltas"):
        assert (out / "charts" / f"{chart}.svg").read_text().startswith("<svg")


def test_index_is_reused_and_test_split_cannot_be_tuned_on(report, tmp_path):
    from semsearch.config import Settings
    from tests.conftest import HashingEncoder
    from tests.eval.conftest import write_beir

    outcome, out = report
    ds = write_beir(tmp_path / "tinybeir")
    with pytest.raises(BadInput, match="--tune-on 'test' is the split being reported"):
        run_eval(ds, "test", tmp_path / "r", Settings(), tune_on="test")
    again = run_eval(ds, "test", tmp_path / "r2", Settings(), configs=["lexical", "dense"],
                     index_dir=out / "index", encoder=HashingEncoder(dim=256))
    assert again.result.index.reused and again.result.index.build_seconds is None
    assert again.result.means["dense"] == pytest.approx(outcome.result.means["dense"])


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(_chromium() is None, reason="chromium and chromedriver are not installed "
                    "(Debian: apt-get install -y chromium chromium-driver)")
def test_html_renders_in_headless_chromium_without_console_errors(report):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    _, out = report
    browser, driver_path = _chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,2400"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        drv.get((out / "report.html").as_uri())
        assert drv.title.startswith("semsearch eval: tinybeir test")
        assert len(drv.find_elements("css selector", "svg")) == 3
        # every chart has a laid-out size (it rendered)
        for svg in drv.find_elements("css selector", ".chart svg"):
            assert svg.size["width"] > 100 and svg.size["height"] > 100
        rows = drv.find_elements("css selector", "table:first-of-type tbody tr")
        assert len(rows) == 6
        logs = drv.get_log("browser")
        errors = [entry for entry in logs if entry["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "report-screenshot.png"
        assert drv.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        shutil.copy(out / "report.html", ARTIFACTS / "report.html")
    finally:
        drv.quit()
