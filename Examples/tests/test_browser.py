"""The example apps in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) types an address, follows the link from the mail (whose
page posts itself, since this browser holds the flow cookie), sees the protected page, and
signs out."""

from __future__ import annotations

import shutil
import uuid

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from conftest import LANGUAGES, ExampleApp

WAIT = 20


@pytest.fixture
def browser():
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "chromium and chromium-driver (Debian) are needed; scripts/setup installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1024,768"):
        options.add_argument(flag)
    # The Debian driver, never one Selenium Manager would download.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(params=LANGUAGES)
def example_app(request):
    # Every example, not only Python's: browsers send Origin and Referer headers in ways curl
    # does not (Origin: null under Referrer-Policy: no-referrer), which an Origin check must take.
    app = ExampleApp(request.param)
    try:
        yield app
    finally:
        app.stop()


def test_a_real_browser_signs_in_with_the_emailed_link(browser, example_app):
    wait = WebDriverWait(browser, WAIT)
    who = f"browser-{uuid.uuid4().hex[:8]}@example.com"

    browser.get(example_app.base + "/")
    field = wait.until(EC.presence_of_element_located((By.NAME, "email")))
    field.send_keys(who)
    field.submit()
    wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "Check your email"))

    link, _ = example_app.wait_for_mail(who)
    # The link's page submits itself in the browser that asked (the flow cookie matches).
    browser.get(link)
    wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), f"Signed in as {who}"))
    assert browser.current_url == example_app.base + "/account"
    cookie = browser.get_cookie("magiclink_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Lax", cookie

    # The page script cannot read the session cookie (HttpOnly).
    assert "magiclink_session" not in browser.execute_script("return document.cookie")

    browser.find_element(By.CSS_SELECTOR, 'form[action="/logout"] [type="submit"], form[action="/logout"] button').click()
    wait.until(EC.presence_of_element_located((By.NAME, "email")))
    assert browser.get_cookie("magiclink_session") is None
    browser.get(example_app.base + "/account")
    wait.until(EC.presence_of_element_located((By.NAME, "email")))
