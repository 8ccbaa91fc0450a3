"""`hfnn demo` end to end in a real browser: the app serves a tiny saved model of each kind on a free port of
127.0.0.1, headless Chromium (driven by Selenium) types an input, submits it and the rendered result is checked.
A screenshot of each page is saved (in $HFNN_DEMO_SCREENSHOTS, else in the test's temporary folder).

Needs gradio and selenium (pip install 'hfnn[demo]' selenium) and Debian's chromium + chromium-driver (apt-get
install chromium chromium-driver; $HFNN_CHROMIUM / $HFNN_CHROMEDRIVER point elsewhere). When one is missing the
tests are skipped with the reason (shown by pytest -ra); with HFNN_REQUIRE_BROWSER=1 (CI) they fail instead.
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REQUIRED = os.environ.get("HFNN_REQUIRE_BROWSER", "") not in ("", "0", "false")


def _find(env: str, names: tuple[str, ...]) -> str | None:
    if os.environ.get(env):
        return os.environ[env] if Path(os.environ[env]).is_file() else None
    return next((shutil.which(n) for n in names if shutil.which(n)), None)


CHROMIUM = _find("HFNN_CHROMIUM", ("chromium", "chromium-browser", "google-chrome"))
CHROMEDRIVER = _find("HFNN_CHROMEDRIVER", ("chromedriver", "chromium-driver"))
MISSING = [
    what for what, ok in (
        ("gradio (pip install 'hfnn[demo]')", importlib.util.find_spec("gradio") is not None),
        ("selenium (pip install selenium)", importlib.util.find_spec("selenium") is not None),
        ("a chromium binary (apt-get install chromium, or set HFNN_CHROMIUM)", CHROMIUM is not None),
        ("chromedriver (apt-get install chromium-driver, or set HFNN_CHROMEDRIVER)", CHROMEDRIVER is not None),
    ) if not ok
]
if MISSING:
    REASON = "browser test of `hfnn demo` not run: missing " + "; ".join(MISSING)
    print(f"\n{REASON}", file=sys.stderr)
    if REQUIRED:
        raise RuntimeError(f"{REASON} (HFNN_REQUIRE_BROWSER is set)")
    pytest.skip(REASON, allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from hfnn.models.demo import build_app, load_demo_model  # noqa: E402
from tests.reliability_utils import REPO  # noqa: E402
from tests.test_demo import save_without_attention  # noqa: E402
from tests.test_hub import save_tiny_model  # noqa: E402

WAIT = 90  # seconds: generous, for two busy cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("HFNN_DEMO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1700",
                "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as err:
        reason = f"browser test of `hfnn demo` not run: {CHROMIUM} did not start: {' '.join(str(err).split())[:300]}"
        print(f"\n{reason}", file=sys.stderr)
        if REQUIRED:
            raise
        pytest.skip(reason)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-browser")
    for name, arch, auto in (("rnn-lm", "rnn", "AutoModelForCausalLM"),
                             ("cnn", "cnn", "AutoModelForSequenceClassification"),
                             ("mlp", "mlp", "AutoModelForSequenceClassification"),
                             ("transformer-g2p", "transformer", "AutoModelForSeq2SeqLM"),
                             ("rnn-g2p", "rnn_seq2seq", "AutoModelForSeq2SeqLM")):
        save_tiny_model(arch, auto, root / name, seed=1)
    save_without_attention(root / "rnn-g2p", root / "rnn-g2p-none")
    return root


def served(folder):
    """The app of ``folder`` served in this process on a free port of 127.0.0.1; yields its URL."""
    app = build_app(load_demo_model(folder))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return app, f"http://127.0.0.1:{port}/"


def wait(driver, condition, what: str):
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.25).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"the page never showed {what}; page text:\n"
                             f"{driver.find_element(By.TAG_NAME, 'body').text[-2000:]}") from None


def submit(driver, url: str, text: str) -> None:
    driver.get(url)
    box = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#prompt textarea"), "the input box")
    box.send_keys(text)
    driver.find_element(By.CSS_SELECTOR, "#submit").click()


def highlighted(driver, elem_id: str):
    """The highlighted token elements rendered inside ``#elem_id`` (elements with a background colour)."""
    return driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} [style*='background-color']")


def plotted(driver, elem_id: str) -> bool:
    """A chart was drawn inside ``#elem_id`` (Gradio's plots render with Vega as SVG or canvas)."""
    return bool(driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} svg .mark-rect, #{elem_id} svg .mark-line, "
                                                      f"#{elem_id} canvas"))


def screenshot(driver, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    print(f"screenshot: {path}")
    return path


def test_language_model_page_from_the_command_line(browser, folders, shots):
    """`python -m hfnn.models.demo FOLDER --port N`: the real entry point, bound to 127.0.0.1 by default."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "hfnn.models.demo", str(folders / "rnn-lm"), "--port", str(port),
                             "--share", "false"], cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"hfnn demo exited with {proc.returncode}:\n{proc.stdout.read()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"hfnn demo did not serve {url} within {WAIT} s") from None
                time.sleep(0.5)
        submit(browser, url, "to be")
        wait(browser, lambda d: len(d.find_element(By.CSS_SELECTOR, "#output textarea").get_attribute("value")) > 40,
             "the generated text")
        tokens = wait(browser, lambda d: highlighted(d, "token-probs"), "the token probabilities")
        wait(browser, lambda d: plotted(d, "alternatives"), "the bar chart of alternatives")
        wait(browser, lambda d: plotted(d, "hidden-norms"), "the hidden-state norm plot")
        text = browser.find_element(By.CSS_SELECTOR, "#output textarea").get_attribute("value")
        assert text.startswith("to be")
        assert 1 <= len(tokens) <= 80  # one highlighted token per generated token (80 asked; fewer after an end token)
        assert "probability" in browser.find_element(By.ID, "alternatives").text
        screenshot(browser, shots, "language-model")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("name, view", [("cnn", "winning n-gram windows"), ("mlp", "leave-one-out contributions")])
def test_classifier_page(browser, folders, shots, name, view):
    app, url = served(folders / name)
    try:
        text = "to be or not to be"
        submit(browser, url, text)
        wait(browser, lambda d: "fresh" in d.find_element(By.ID, "scores").text
             and "rotten" in d.find_element(By.ID, "scores").text, "the label scores")
        marked = wait(browser, lambda d: highlighted(d, "highlight"), f"the highlighted {view}")
        table = wait(browser, lambda d: d.find_element(By.ID, "details").text.strip() or None, "the details table")
        if name == "cnn":
            assert "width 2" in table or "width 3" in table
        else:
            assert len(marked) >= 1 and "contribution to" in table
        screenshot(browser, shots, f"classifier-{name}")
        # an empty text: a one-line message on the page, not a traceback
        box = browser.find_element(By.CSS_SELECTOR, "#prompt textarea")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.BACKSPACE)  # typed, so that the page sees the change (clear() fires no input event)
        browser.find_element(By.CSS_SELECTOR, "#submit").click()
        wait(browser, lambda d: "type a text to classify" in d.find_element(By.TAG_NAME, "body").text,
             "the empty-text message")
        assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
    finally:
        app.close()


def test_seq2seq_attention_heatmap_page(browser, folders, shots):
    app, url = served(folders / "transformer-g2p")
    try:
        submit(browser, url, "hello")
        wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#output textarea").get_attribute("value").strip(),
             "the output")
        cells = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#heatmap table.hfnn-heatmap td"),
                     "the heatmap")
        rows = browser.find_elements(By.CSS_SELECTOR, "#heatmap table.hfnn-heatmap tbody tr")
        assert len(cells) == len(rows) * len("hello") and rows
        assert "mean over heads" in browser.find_element(By.ID, "heatmap").text
        screenshot(browser, shots, "seq2seq-attention")
    finally:
        app.close()


def test_seq2seq_without_attention_says_so(browser, folders, shots):
    app, url = served(folders / "rnn-g2p-none")
    try:
        submit(browser, url, "hello")
        note = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#heatmap .hfnn-no-attention"),
                    "the no-attention note")
        assert "no attention to show" in note[0].text
        assert not browser.find_elements(By.CSS_SELECTOR, "#heatmap table")
    finally:
        app.close()


def _capture(folder: str, text: str, out: str, wait_for: str) -> None:
    """Screenshot of the demo page of ``folder`` after submitting ``text`` (what the README shows), once the
    element matching the CSS selector ``wait_for`` is rendered."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1200"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    app, url = served(folder)
    try:
        submit(driver, url, text)
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, wait_for), wait_for)
        time.sleep(2)  # let the plots finish drawing
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(int(height) + 200, 3200))
        time.sleep(1)
        driver.save_screenshot(out)
        print(f"screenshot: {out}")
    finally:
        driver.quit()
        app.close()


if __name__ == "__main__":  # python -m tests.test_demo_browser FOLDER TEXT OUT.png CSS_SELECTOR
    _capture(*sys.argv[1:5])
