"""The storefront page in a real headless Chromium (Debian's chromium and chromium-driver, driven by selenium):
an anonymous visit personalizes from its first view, the product, cart and search placements answer, and a
known shopper can be picked. Screenshots are saved. Skipped, saying how to install it, where Chromium is missing."""

import shutil
from pathlib import Path

import pytest

from hyperrec.serve.config import ServeConfig
from tests.conftest import SERVE_PORT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
INSTALL = "the storefront page test needs Chromium: `sudo apt-get install chromium chromium-driver` (`make test` installs them)"


@pytest.fixture(scope="module")
def shop_url(ray_cluster, exported, tmp_path_factory):
    from hyperrec.serve.runner import start, stop

    config = ServeConfig(
        registry=exported.path.parent, version=exported.version, port=SERVE_PORT, event_log=tmp_path_factory.mktemp("shop") / "log"
    )
    try:
        yield start(config) + "/shop"
    finally:
        stop()


@pytest.fixture()
def browser(monkeypatch):
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(INSTALL)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium never fetches a driver or a browser: the system's are given
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1700"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_storefront_page_follows_what_the_shopper_does(shop_url, browser, tmp_path_factory):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    shots = tmp_path_factory.mktemp("shop-screenshots")

    def updated(times: int) -> None:
        WebDriverWait(browser, 30).until(lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0) >= times)
        assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-error") is None

    def cards(section: str) -> list:
        return browser.find_elements(By.CSS_SELECTOR, f"#{section} li.item")

    def ids(section: str) -> list[str]:
        return [c.get_attribute("data-item-id") for c in cards(section)]

    def meta(section: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, f"#{section} p.meta:not(.contents)").text

    def shot(name: str) -> None:
        assert browser.save_screenshot(str(shots / f"{name}.png"))

    browser.get(shop_url)
    updated(1)
    assert len(cards("home")) == 6 and "popularity" in meta("home")  # an anonymous first visit: nothing to personalize on yet
    assert not browser.find_element(By.ID, "product").is_displayed()
    shot("1-anonymous")

    viewed = ids("home")[0]
    cards("home")[0].find_element(By.CSS_SELECTOR, "button.view").click()  # a click and a view, through /events
    updated(2)
    assert browser.find_element(By.ID, "product").is_displayed()
    assert meta("product").startswith("product · ranker") and viewed not in ids("product") and len(ids("product")) == 6
    assert meta("home").startswith("home · ranker")  # the session's first view personalizes the home list
    shot("2-product-page")

    carted = ids("product")[0]
    cards("product")[0].find_element(By.CSS_SELECTOR, "button.add").click()
    updated(3)
    assert browser.find_element(By.CSS_SELECTOR, "#cart .count").text == "1 item(s)"
    assert meta("cart").startswith("cart · ranker") and carted not in ids("cart") and carted not in ids("home")
    shot("3-cart")

    word = browser.find_element(By.CSS_SELECTOR, "#home li.item .title").text.split()[0]  # a category word of the shop's titles
    browser.find_element(By.ID, "query").send_keys(word)
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    updated(4)
    titles = [c.find_element(By.CSS_SELECTOR, ".title").text for c in cards("search")]
    assert meta("search").startswith("search · ranker") and titles and all(word in t.split() for t in titles)
    shot("4-search")

    Select(browser.find_element(By.ID, "shopper")).select_by_index(1)  # a shopper the server knows: a new session
    updated(5)
    assert meta("home").startswith("home · ranker") and browser.find_element(By.CSS_SELECTOR, "#cart .count").text == "empty"
    assert any(c.find_element(By.CSS_SELECTOR, ".reason").text.startswith("you b") for c in cards("home"))  # their own history
    shot("5-known-shopper")
    assert all(Path(shots / f).stat().st_size > 10_000 for f in ("1-anonymous.png", "3-cart.png", "5-known-shopper.png"))
