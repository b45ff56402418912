"""The console in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

One administrator's session, end to end: a wrong login is refused; log in; a
deferred message shows on Queues; Retry now and it reaches the sink; change
"Retry failed messages every" on Outgoing Mail, Save, and the YAML has the new
value with its comments kept and the running gateway uses it; Undo puts the
file and the behaviour back. With MAILPIPE_SCREENSHOTS=1 it saves a PNG of
each page under docs/console/.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.console.conftest import PASSWORD, USER, ConsoleSetup, poll

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
WAIT = 20.0


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("Debian's chromium and chromium-driver are needed (bash .ci/install-console.sh)")
    profile = tempfile.mkdtemp(prefix="mailpipe-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver: WebDriver, name: str) -> None:
    """Save a screenshot of the whole page for the docs (only with MAILPIPE_SCREENSHOTS=1)."""
    if os.environ.get("MAILPIPE_SCREENSHOTS") != "1":
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(700, min(int(height) + 40, 2400)))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1280, 900)


def wait_text(driver: WebDriver, url: str, text: str, what: str) -> None:
    """Load ``url`` until its page shows ``text`` (bounded; the page is reloaded between looks)."""
    def look(d: WebDriver) -> bool:
        d.get(url)
        return text in d.find_element(By.TAG_NAME, "body").text

    WebDriverWait(driver, WAIT, poll_frequency=0.3).until(look, f"{what}: {text!r} not shown at {url}")


def log_in(driver: WebDriver, base: str, password: str) -> None:
    driver.get(f"{base}/login")
    driver.find_element(By.ID, "username").send_keys(USER)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-button").click()


def flash(driver: WebDriver) -> str:
    """The message the page shows after a Save or Undo (an error counts too); bounded wait. An element that
    went stale was on the page the button is replacing: look again."""
    def found(d: WebDriver) -> str | bool:
        shown = d.find_elements(By.CSS_SELECTOR, "#flash, p.error, small.error")
        return " ".join(e.text for e in shown) or False

    wait = WebDriverWait(driver, WAIT, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(found, "no message after the button")


def next_retry_delay(setup: ConsoleSetup, message_id: str) -> float:
    """Seconds between the last attempt of the message's first recipient and its next attempt."""
    detail = setup.mailpipe.cli_json("queue", "show", message_id)
    return detail["recipients"][0]["next_attempt"] - detail["attempts"][-1]["time"]


def deferred_message(setup: ConsoleSetup, recipient: str, subject: str) -> str:
    """Send a message the sink defers; its queue id once the deferral is recorded."""
    setup.sink.behaviour.rcpt[recipient] = "450 4.2.0 busy, try later"
    setup.send([recipient], subject=subject)

    def find() -> str | None:
        rows = setup.mailpipe.cli_json("queue", "list")
        for row in rows:
            detail = setup.mailpipe.cli_json("queue", "show", row["id"])
            if detail["recipients"][0]["address"] == recipient and detail["attempts"]:
                return row["id"]
        return None

    return str(poll(find, WAIT, f"the deferral of {recipient}"))


def test_console_in_chromium(console_setup: ConsoleSetup, browser: WebDriver) -> None:
    setup, base, driver = console_setup, console_setup.console_url, browser
    config = setup.mailpipe.config_path
    original = config.read_text()

    # A wrong login is refused and leaves the user on the login page.
    log_in(driver, base, "wrong password")
    error = WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.ID, "login-error"), "no login error shown")
    assert "Wrong user name or password" in error[0].text
    assert driver.current_url.endswith("/login")
    shot(driver, "login")
    log_in(driver, base, PASSWORD)
    WebDriverWait(driver, WAIT).until(lambda d: d.current_url.endswith("/queues"), "login did not reach Queues")

    # A deferred message shows on the Queues page and on its own page with its attempt.
    mid = deferred_message(setup, "bob@dest.test", "Deferred at first")
    wait_text(driver, f"{base}/queues?state=deferred", mid, "the deferred message on Queues")
    shot(driver, "queues")
    driver.find_element(By.LINK_TEXT, mid).click()
    assert "busy, try later" in driver.find_element(By.ID, "attempts").text
    assert "deferred" in driver.find_element(By.ID, "recipients").text

    # Retry now: the sink takes it this time; the page shows it delivered.
    del setup.sink.behaviour.rcpt["bob@dest.test"]
    driver.find_element(By.ID, "retry").click()
    setup.sink.wait_for(1)
    assert setup.sink.messages[0].rcpt_tos == ["bob@dest.test"]
    wait_text(driver, f"{base}/queues/{mid}", "delivered", "the delivery on the message page")
    shot(driver, "message")

    # Outgoing Mail: "Retry failed messages every" 15m -> 7m, Save.
    driver.get(f"{base}/outgoing")
    field = driver.find_element(By.ID, "retry_every")
    assert field.get_attribute("value") == "15m"
    assert driver.find_element(By.ID, "password").get_attribute("value") == ""
    shot(driver, "outgoing")
    field.clear()
    field.send_keys("7m")
    driver.find_element(By.ID, "save").click()
    assert "Saved and applied" in flash(driver), driver.find_element(By.TAG_NAME, "main").text
    saved = config.read_text()
    changed = [(a, b) for a, b in zip(original.splitlines(), saved.splitlines(), strict=True) if a != b]
    assert changed == [("      every: 15m           # \"Retry failed messages every\"",
                        "      every: 7m            # \"Retry failed messages every\"")], changed
    assert "# mailpipe under test: the console's Outgoing Mail page edits this file." in saved
    # ... and the running gateway uses it: the next deferral waits 7 minutes.
    second = deferred_message(setup, "carol@dest.test", "Deferred after the save")
    assert next_retry_delay(setup, second) == pytest.approx(420, abs=5)

    # Undo: the file as it was before the Save, and 15 minutes again.
    driver.find_element(By.ID, "undo").click()
    assert "Undone" in flash(driver), driver.find_element(By.TAG_NAME, "main").text
    assert config.read_text() == original
    assert driver.find_element(By.ID, "retry_every").get_attribute("value") == "15m"
    third = deferred_message(setup, "dave@dest.test", "Deferred after the undo")
    assert next_retry_delay(setup, third) == pytest.approx(900, abs=5)

    # The other pages render for the docs (and the live Sessions part refreshes itself).
    for page, name, marker in (("/log", "message-log", "Message Log"), ("/events", "event-log", "config.reloaded"),
                               ("/stats", "statistics", "Queue depth")):
        wait_text(driver, f"{base}{page}", marker, name)
        shot(driver, name)
    driver.get(f"{base}/sessions")
    live = driver.find_element(By.ID, "live-sessions")
    WebDriverWait(driver, WAIT).until(lambda d: live.get_attribute("data-updated"), "Sessions did not refresh")
    shot(driver, "sessions")
