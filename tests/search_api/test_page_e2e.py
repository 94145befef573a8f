"""The search page in headless Chromium (Debian's chromium + chromedriver, driven by
Selenium) against a real ``semsearch serve`` process. A screenshot is saved under
artifacts/ (git-ignored)."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,1000", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_search_page_shows_highlighted_explained_hits(index_dir, start_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    srv = start_server(index_dir)
    browser.get(srv.url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(ec.text_to_be_present_in_element((By.ID, "index-info"), "12 documents"))
    box = browser.find_element(By.ID, "q")
    box.send_keys("bees pollinate crops")
    browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results li.hit")))

    hits = browser.find_elements(By.CSS_SELECTOR, "#results li.hit")
    assert len(hits) == 10
    top = hits[0]
    assert top.get_attribute("data-id") == "d11"
    assert "Honeybees" in top.find_element(By.TAG_NAME, "h3").text
    marks = [m.text for m in top.find_elements(By.CSS_SELECTOR, ".snippet mark")]
    assert marks == ["Bees", "pollinate", "crops"]
    channels = {c.get_attribute("data-channel"): c.text for c in top.find_elements(By.CSS_SELECTOR, ".channels .ch")}
    assert channels["lexical"].startswith("lexical #1") and channels["dense"].startswith("dense #1")
    assert "hybrid: hits 1–10" in browser.find_element(By.ID, "status").text
    # no image search in this build: its upload form and the image grid stay hidden
    assert not browser.find_element(By.ID, "image-form").is_displayed()
    assert not browser.find_element(By.ID, "image-results").is_displayed()

    out = REPO / "artifacts"
    out.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(out / "search_page.png"))

    # page 2 continues the same fused list
    browser.find_element(By.ID, "next").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "hits 11–12"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results li.hit")) == 2

    # a server error is shown, not swallowed: switch to a mode the index cannot serve
    browser.execute_script("document.getElementById('mode').add(new Option('bogus', 'bogus'));"
                           "document.getElementById('mode').value = 'bogus';")
    browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
    wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert "422" in browser.find_element(By.ID, "error").text


def test_search_page_image_upload_grid_and_duplicate_groups(tmp_path, minilm, start_server, browser):
    """Upload a photograph on the page and see similar images (thumbnails served by the
    server), then the near-duplicate groups; image index with the tiny CLIP config."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.images.conftest import TINY_CLIP, jpeg_bytes, photo
    from tests.search_api.test_images_api import build_image_index, image_app_settings

    index = build_image_index(tmp_path, image_app_settings(tmp_path), minilm)
    query = tmp_path / "query.jpg"
    query.write_bytes(jpeg_bytes(photo("astronaut"), quality=80))
    # the page sends no API key: this operator lets anyone run duplicate scans (a job)
    srv = start_server(index, SEMSEARCH_CLIP__ARCHITECTURE=str(TINY_CLIP), SEMSEARCH_CLIP__DEVICE="cpu",
                       SEMSEARCH_IMAGES__ROOTS=f'["{tmp_path}"]', SEMSEARCH_API__DUPLICATES_NEED_KEY="false")
    browser.get(srv.url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(ec.visibility_of_element_located((By.ID, "image-form")))
    browser.find_element(By.ID, "image-file").send_keys(str(query))
    browser.find_element(By.CSS_SELECTOR, "#image-form button[type=submit]").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "similar to query.jpg"))
    figs = browser.find_elements(By.CSS_SELECTOR, "#image-results figure.image-hit")
    assert len(figs) == 10 and browser.find_element(By.ID, "image-results").is_displayed()
    assert figs[0].get_attribute("data-id") == "photos/astronaut.jpg"
    assert "phash Hamming" in figs[0].find_element(By.CSS_SELECTOR, ".hamming").text
    # the thumbnails really load from the server
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#image-results img')].every(i => i.complete && i.naturalWidth > 0)"))
    out = REPO / "artifacts"
    out.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(out / "search_page_images.png"))

    browser.find_element(By.ID, "dup-button").click()
    wait.until(ec.visibility_of_element_located((By.ID, "duplicate-groups")))
    groups = [{f.get_attribute("data-id") for f in g.find_elements(By.TAG_NAME, "figure")}
              for g in browser.find_elements(By.CSS_SELECTOR, "#duplicate-groups li.dup-group")]
    assert {"photos/astronaut.jpg", "photos/astronaut_small.jpg", "photos/astronaut_flip.png"} in groups
    assert not browser.find_element(By.ID, "image-results").is_displayed()

    # images by text: the CLIP text tower's hits land in the grid
    mode = browser.find_element(By.ID, "mode")
    browser.execute_script("arguments[0].value = 'image';", mode)
    browser.find_element(By.ID, "q").send_keys("a cup of coffee")
    browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "image: hits 1–10"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#image-results figure.image-hit")) == 10
    assert browser.find_elements(By.CSS_SELECTOR, "#results li.hit") == []
