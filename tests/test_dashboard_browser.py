"""The dashboard in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromedriver. The page loads without console errors, shows the node and a
running task of a live node, follows the task as it finishes, and leaves a screenshot
(in the test's tmp dir, and in $ACTORSCOOP_SCREENSHOT_DIR when that is set)."""
import os
import shutil
import time

import pytest

import actorscoop as asc

pytestmark = pytest.mark.timeout(180)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401
except ImportError:
    selenium = None

_MISSING = [name for name, found in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER),
                                     ("selenium", selenium)) if not found]
if _MISSING:
    pytest.skip("the browser test needs Debian's chromium and chromedriver "
                "(apt-get install -y chromium chromium-driver) and selenium (the test extras); "
                f"missing: {', '.join(_MISSING)}", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1200", "--no-first-run", "--disable-extensions",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@asc.remote
def held(flag, deadline):
    """Runs until ``flag`` exists (the test lets it go), at most until ``deadline``."""
    while not os.path.exists(flag) and time.time() < deadline:
        time.sleep(0.02)
    return "released"


@asc.remote
def quick(i):
    return i


@asc.remote
def broken(x):
    raise KeyError(f"no such key: {x}")


@asc.remote
class Tally:
    def add(self, k):
        return k


def text_of(driver, css):
    """The text of an element, read in one script call (the page redraws every second)."""
    return driver.execute_script("return document.querySelector(arguments[0]).textContent", css)


def function_row(driver, name):
    """The cells of the tasks-by-function row of ``name``, as text (None: no such row)."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#by-function tbody tr')]"
        ".map(tr => [...tr.cells].map(c => c.textContent))")
    return next((cells for cells in rows if cells and cells[0].endswith(name)), None)


def test_dashboard_in_a_browser(fresh_node, browser, tmp_path):
    fresh_node(num_cpus=2, include_dashboard=True, dashboard_port=0)
    info = asc.init(ignore_reinit_error=True)  # the node's info, with its dashboard's address
    url, node_id = info["dashboard_url"], info["node_id"]
    asc.get([quick.remote(i) for i in range(20)])
    tally = Tally.options(name="tally").remote()
    asc.get(tally.add.remote(1))
    try:
        asc.get(broken.remote("x"))
    except KeyError:
        pass
    # Last: a task queued after it could wait behind it on the same worker (pipelining).
    flag = str(tmp_path / "release")
    ref = held.remote(flag, time.time() + 120)

    browser.get(url)
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    # the node, and the task that is running now
    wait.until(lambda d: node_id[:12] in text_of(d, "#nodes tbody"))
    wait.until(lambda d: (function_row(d, "held") or [""] * 6)[3] == "1")  # running
    assert "held" in browser.execute_script(
        "return state.drawn.filter(d => d.e.state === 'running').map(d => d.e.name).join()")
    assert "0 busy / " not in text_of(browser, "#nodes tbody")
    wait.until(lambda d: (function_row(d, "quick") or [""] * 6)[4] == "20")  # finished
    wait.until(lambda d: all(s in text_of(d, "#actors tbody") for s in ("Tally", "alive")))
    wait.until(lambda d: all(s in text_of(d, "#failures") for s in ("no such key: x", "KeyError")))
    assert "live" in text_of(browser, "#conn")
    shot = save_screenshot(browser, tmp_path, "dashboard-running.png")

    # the page follows the task as it finishes, without a reload
    marker = browser.execute_script("window.__sameDocument = 1; return window.__sameDocument")
    with open(flag, "w"):
        pass
    assert asc.get(ref, timeout=60) == "released"
    wait.until(lambda d: (function_row(d, "held") or [""] * 6)[3:5] == ["0", "1"])  # running, finished
    wait.until(lambda d: d.execute_script(
        "return state.drawn.some(d => d.e.name.endsWith('held') && d.e.state === 'finished')"))
    assert browser.execute_script("return window.__sameDocument") == marker
    save_screenshot(browser, tmp_path, "dashboard-finished.png")

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, f"console errors: {errors}"
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    asc.kill(tally)


def save_screenshot(driver, tmp_path, name):
    """Save it under the test's tmp dir, and copy it to $ACTORSCOOP_SCREENSHOT_DIR if set."""
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), "the browser made no screenshot"
    target = os.environ.get("ACTORSCOOP_SCREENSHOT_DIR")
    if target:
        os.makedirs(target, exist_ok=True)
        shutil.copy(path, os.path.join(target, name))
    return path
