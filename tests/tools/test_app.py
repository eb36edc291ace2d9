"""The web app (`mtqnet app`): its functions, a launched app driven with gradio_client, and a real headless browser."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile

gr = pytest.importorskip("gradio")  # installed by scripts/setup_env.sh (requirements-cpu-test.txt)

from modeling_mtqnet.pretrained import pretrained_path  # noqa: E402
from modeling_mtqnet.tools import app  # noqa: E402
from tests.helpers import noisy_tone  # noqa: E402

NAMES = ["s_mos", "n_mos", "g_mos"]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def scorer(saved_model_dir, tmp_path_factory) -> app.AppScorer:
    return app.AppScorer(saved_model_dir, tmp_path_factory.mktemp("app_plots"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("app_audio")
    paths = {name: folder / f"{name}.wav" for name in ("good", "noisy", "empty", "silent", "short", "corrupt")}
    soundfile.write(paths["good"], noisy_tone(1.5, 25.0, seed=1), 16000)
    soundfile.write(paths["noisy"], noisy_tone(1.5, 0.0, seed=1), 16000)
    soundfile.write(paths["empty"], np.zeros(0, np.float32), 16000)
    soundfile.write(paths["silent"], np.zeros(16000, np.float32), 16000)
    soundfile.write(paths["short"], noisy_tone(0.01, seed=2), 16000)
    paths["corrupt"].write_bytes(b"RIFF....WAVEnot really")
    return paths


def pipeline_scores(scorer: app.AppScorer, path: Path) -> list[float]:
    result = scorer.pipe(str(path))
    return [result[name] for name in NAMES]


def shown_scores(markdown: str) -> list[float]:
    return [float(value) for value in re.findall(r"\*\*([+-]?\d+\.\d+)\*\*", markdown)]


def test_score_tab_shows_the_pipelines_scores_with_names_and_ranges(scorer, clips):
    text, plot, windows = app.score_tab(scorer, str(clips["good"]))
    assert shown_scores(text) == pytest.approx(pipeline_scores(scorer, clips["good"]), abs=0.006)
    assert "S-MOS" in text and "1 to 5" in text and Path(plot).stat().st_size > 10_000 and windows == []


def test_long_files_are_windowed_and_listed(scorer, tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(path, noisy_tone(31.0, seed=3), 16000)  # over the pipeline's 30 s: windowed by default
    text, _, windows = app.score_tab(scorer, str(path))
    assert len(windows) >= 3 and "windows" in text
    assert windows[0][:2] == [0.0, 10.0] and len(windows[0]) == 2 + len(NAMES)


def test_compare_tab_shows_b_minus_a(scorer, clips):
    table, plot_a, plot_b = app.compare_tab(scorer, str(clips["good"]), str(clips["noisy"]))
    a, b = pipeline_scores(scorer, clips["good"]), pipeline_scores(scorer, clips["noisy"])
    assert shown_scores(table) == pytest.approx([round(y - x, 2) for x, y in zip(a, b)], abs=0.011)
    assert plot_a != plot_b and Path(plot_b).exists()


@pytest.mark.parametrize("name, message", [
    ("empty", "Cannot decode|empty"), ("silent", "silent"), ("short", "too short"), ("corrupt", "Cannot decode"),
])
def test_bad_input_gives_the_packages_message(scorer, clips, name, message):
    with pytest.raises(app.AppError, match=message):
        app.score_tab(scorer, str(clips[name]))
    with pytest.raises(app.AppError, match="upload or record"):
        app.score_tab(scorer, None)


def test_batch_tab_carries_on_past_a_bad_file_and_writes_a_csv(scorer, clips):
    rows, csv_path = app.batch_tab(scorer, [str(clips["good"]), str(clips["silent"]), str(clips["noisy"])])
    assert [row[0] for row in rows] == ["good.wav", "silent.wav", "noisy.wav"]
    assert rows[0][1:4] == pytest.approx(pipeline_scores(scorer, clips["good"]), abs=1e-4) and rows[0][4] == ""
    assert rows[1][1] is None and "silent" in rows[1][4]
    assert Path(csv_path).read_text().splitlines()[0] == "file,s_mos,n_mos,g_mos,error"


def test_examples_are_made_offline_and_score(scorer, tmp_path):
    paths = app.make_examples(tmp_path)
    assert len(paths) == 3 and all(soundfile.info(path).duration == pytest.approx(app.EXAMPLE_SECONDS) for path in paths)
    assert all(shown_scores(app.score_tab(scorer, path)[0]) for path in paths)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(saved_model_dir):
    port = free_port()
    blocks = app.launch(str(saved_model_dir), "127.0.0.1", port, block=False)
    yield f"http://127.0.0.1:{port}/", blocks
    blocks.close()


def test_launched_app_answers_gradio_client_with_the_pipelines_scores(served, scorer, clips):
    from gradio_client import Client, handle_file

    url, _ = served
    client = Client(url, verbose=False)
    text, _, _ = client.predict(handle_file(str(clips["good"])), api_name="/score")
    assert shown_scores(text) == pytest.approx(pipeline_scores(scorer, clips["good"]), abs=0.006)
    with pytest.raises(Exception, match="silent"):
        client.predict(handle_file(str(clips["silent"])), api_name="/score")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed")
def test_a_real_browser_uploads_a_file_and_sees_the_scores(served, scorer, clips, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = served
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        upload = wait.until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, "#score-audio input[type=file]")))
        upload.send_keys(str(clips["good"]))
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#score-audio audio, "
                                                                    "#score-audio .waveform-container, "
                                                                    "#score-audio button[aria-label]")))
        wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "#score-button"))).click()
        wait.until(lambda page: "S-MOS" in page.find_element(By.CSS_SELECTOR, "#score-result").text)
        shown = page_scores = driver.find_element(By.CSS_SELECTOR, "#score-result").text
        values = [float(value) for value in re.findall(r"\b(\d\.\d\d)\b", page_scores)][:3]
        assert values == pytest.approx(pipeline_scores(scorer, clips["good"]), abs=0.006), shown
        screenshot = tmp_path / "app_score.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 20_000
    finally:
        driver.quit()


def test_the_model_cards_stand_in_wording_is_shown(saved_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved_model_dir, folder)
    assert "model card says what they were" in app.labels_note(folder)  # no card: a plain reminder
    (folder / "README.md").write_text("# A model\n\nSome text.\n\n**The training labels are stand-ins, not 3QUEST "
                                      "scores.** DNSMOS P.835 SIG, BAK and OVRL.\n\nMore.\n")
    note = app.labels_note(folder)
    assert note.startswith("**The training labels are stand-ins") and "More" not in note
    blocks = app.build_app(app.AppScorer(folder, tmp_path / "plots"))
    assert "stand-ins, not 3QUEST" in str(blocks.config)


def test_without_model_the_app_shows_the_shipped_s_n_g_model_and_its_stand_in_wording():
    args = app.parse_args([])
    assert Path(args.model) == pretrained_path(app.DEFAULT_MODEL)
    assert app.labels_note(Path(args.model)).startswith("**The training labels are stand-ins, not 3QUEST")
