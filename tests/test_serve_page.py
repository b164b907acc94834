"""The live page (`reactdiff serve`'s /) in a real headless browser: Debian's chromium + chromium-driver (the test
command installs them as root), software WebGL (SwiftShader), chromium's fake microphone. The page opens, streams a
clip and the microphone through the socket in real time, and draws the listener."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

pytest.importorskip("websockets")
webdriver = pytest.importorskip("selenium.webdriver")

from reactdiff.serve.session import LiveModel  # noqa: E402

from reactdiff.serve.background import start  # noqa: E402
from test_serve_session import make_export  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                                "(tools/test.sh installs them when run as root)")


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required", "--window-size=900,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def service(tiny_shards, tmp_path_factory):
    from reactdiff.render.synthetic_model import write_model

    tmp = tmp_path_factory.mktemp("page")
    live = LiveModel.load(make_export(tiny_shards, tmp / "export", ["model.face_dropout=0.2", "sample.k=1"]))
    server = start(live, shards=tiny_shards, faceverse=write_model(tmp / "faceverse.npy", rings=24, segments=32))
    yield server
    server.close()


def page_state(browser):
    return browser.execute_script("const p = window.reactdiffPage; return p && {received: p.framesReceived, "
                                  "drawn: p.framesDrawn, done: p.done, errors: p.errors, lit: p.litPixels(), "
                                  "compute: p.computeMs.length, e2e: p.e2eMs.length, status: "
                                  "document.getElementById('status').textContent};")


def wait_for(browser, ok, timeout: float, what: str):
    end = time.time() + timeout
    state = None
    while time.time() < end:
        state = page_state(browser)
        if state and state["errors"]:
            pytest.fail(f"the page reports: {state['errors']}")
        if state and ok(state):
            return state
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout} s; the page: {state}")


def test_the_page_streams_a_clip_and_draws_the_listener(browser, service):
    from selenium.webdriver.common.by import By

    browser.get(service.http + "/")
    wait_for(browser, lambda s: s["status"].startswith("ready"), 30, "the page got ready")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#clip option")) == 12
    assert page_state(browser)["lit"] == 0  # nothing drawn yet
    browser.find_element(By.ID, "play-clip").click()
    state = wait_for(browser, lambda s: s["done"] and s["drawn"] > 20, 60, "the clip streamed and played")
    assert state["received"] == 120 and state["compute"] == 5 and state["e2e"] > 50
    assert state["lit"] > 2000, state  # a grey face on the dark background
    assert "done: 120 listener frames" in state["status"]


def test_a_wav_file_drives_an_audio_only_listener(browser, service, tmp_path):
    import soundfile as sf
    from selenium.webdriver.common.by import By

    t = np.arange(int(44100 * 2.0)) / 44100  # 2 s of a 44.1 kHz tone with a pause: the page resamples it
    sf.write(tmp_path / "speech.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * (t % 1 < 0.6)).astype(np.float32), 44100)
    browser.get(service.http + "/")
    wait_for(browser, lambda s: s["status"].startswith("ready"), 30, "the page got ready")
    browser.find_element(By.ID, "wav").send_keys(str(tmp_path / "speech.wav"))
    browser.find_element(By.ID, "play-wav").click()
    state = wait_for(browser, lambda s: s["done"], 60, "the wav file streamed")
    assert state["received"] == 50 and state["drawn"] > 0 and state["lit"] > 2000, state


def test_the_microphone_drives_an_audio_only_listener(browser, service):
    from selenium.webdriver.common.by import By

    browser.get(service.http + "/")
    wait_for(browser, lambda s: s["status"].startswith("ready"), 30, "the page got ready")
    browser.find_element(By.ID, "mic").click()
    state = wait_for(browser, lambda s: s["received"] >= 24 and s["drawn"] > 0, 60,
                     "listener frames came back for the microphone's audio")
    browser.find_element(By.ID, "stop").click()
    state = wait_for(browser, lambda s: s["done"], 30, "the session ended after Stop")
    assert state["lit"] > 2000 and state["e2e"] > 0
