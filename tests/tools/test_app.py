"""The web app (`mtqnet app`): its functions, a launched app driven with gradio_client (three users at once, a full
queue, uploads over the limits), a long upload to an app in its own process (peak memory), and a headless browser."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile

gr = pytest.importorskip("gradio")  # installed by scripts/setup_env.sh (requirements-cpu-test.txt)

from modeling_mtqnet.pretrained import pretrained_path  # noqa: E402
from modeling_mtqnet.tools import app  # noqa: E402
from modeling_mtqnet.scoring.frame_plots import PLOT_COLUMNS, SignalSketch  # noqa: E402
from tests.helpers import build_model, noisy_tone  # noqa: E402

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
    paths["long"] = folder / "long.wav"  # over the launched app's limit (SERVED_LIMITS), under its size limit
    soundfile.write(paths["long"], noisy_tone(40.0, seed=4), 16000, subtype="PCM_16")
    paths["large"] = folder / "large.wav"  # over the launched app's size limit, under its duration limit
    soundfile.write(paths["large"], noisy_tone(20.0, seed=5, rate=48000).repeat(2).reshape(-1, 2), 48000,
                    subtype="FLOAT")
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


def test_the_pictures_sketch_equals_matplotlibs_spectrogram_and_the_signals_envelope():
    import matplotlib.mlab as mlab

    signal = noisy_tone(4.0, seed=6)
    sketch = SignalSketch.of(signal, 16000)
    power, _, _ = mlab.specgram(signal, NFFT=512, Fs=16000, noverlap=256)  # what the plots drew before
    assert sketch.spectrogram_db() == pytest.approx(10 * np.log10(power), abs=1e-6)
    times, lowest, highest = sketch.envelope_columns()
    assert lowest.min() == signal.min() and highest.max() == signal.max() and times.size <= 4 * PLOT_COLUMNS
    assert sketch.duration_s == 4.0


def test_a_sketch_has_the_same_columns_in_any_blocks_and_never_more_than_its_bound():
    rng = np.random.default_rng(7)
    signal = rng.standard_normal(200_000).astype(np.float32)
    whole = SignalSketch(16000, columns=16)
    whole.add(signal)
    pieces = SignalSketch(16000, columns=16)
    cuts = np.sort(rng.integers(0, signal.size, 40))
    for piece in np.split(signal, cuts):
        pieces.add(piece)
    span = pieces.envelope.span
    assert span == whole.envelope.span and len(pieces.envelope.values()) <= 4 * 16
    expected = [[signal[i : i + span].min(), signal[i : i + span].max()] for i in range(0, signal.size, span)]
    assert pieces.envelope.values() == pytest.approx(np.array(expected))
    assert pieces.spectrogram_db() == pytest.approx(whole.spectrogram_db(), abs=1e-6)
    assert pieces.spectrogram_db().shape[1] <= 2 * 16


def test_a_file_over_the_limits_is_refused_from_its_header_before_any_work(scorer, clips, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the pipeline ran on a refused file")

    monkeypatch.setattr(scorer, "pipe", no_work)
    monkeypatch.setattr(scorer, "limits", app.UploadLimits(max_minutes=0.5, max_mb=100))
    with pytest.raises(app.AppError, match=r"long\.wav is 0\.7 minutes long: this app takes files up to 0\.5 minutes "
                                           r"\(mtqnet app --max_upload_minutes\)"):
        app.score_tab(scorer, str(clips["long"]))
    assert scorer.upload_note(str(clips["long"])).startswith("**Refused:** long.wav is 0.7 minutes")
    monkeypatch.setattr(scorer, "limits", app.UploadLimits(max_minutes=10, max_mb=0.5))
    with pytest.raises(app.AppError, match=r"long\.wav is 1\.3 MB: this app takes files up to 0\.5 MB"):
        app.compare_tab(scorer, str(clips["long"]), str(clips["good"]))
    rows, _ = app.batch_tab(scorer, [str(clips["long"])])
    assert rows[0][1] is None and "--max_upload_mb" in rows[0][-1]


def test_options_of_the_limits_and_the_queue():
    args = app.parse_args(["--max_upload_minutes", "30", "--max_upload_mb", "200", "--workers", "3", "--max_queue",
                           "5"])
    assert (args.max_upload_minutes, args.max_upload_mb, args.workers, args.max_queue) == (30, 200, 3, 5)
    defaults = app.parse_args([])
    assert (defaults.max_upload_minutes, defaults.workers) == (app.DEFAULT_MAX_UPLOAD_MINUTES, app.DEFAULT_WORKERS)
    with pytest.raises(SystemExit):
        app.parse_args(["--max_upload_minutes", "0"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The launched app's limits: small, so that the clips above cross them (`long` by duration, `large` by size).
SERVED_LIMITS = app.UploadLimits(max_minutes=0.5, max_mb=2.0)
SERVED_WORKERS, SERVED_QUEUE = 2, 3  # a queue as long as the users who arrive at once: none is refused by a race


@pytest.fixture(scope="module")
def served(saved_model_dir):
    port = free_port()
    blocks = app.launch(str(saved_model_dir), "127.0.0.1", port, block=False, limits=SERVED_LIMITS,
                        workers=SERVED_WORKERS, max_queue=SERVED_QUEUE)
    yield f"http://127.0.0.1:{port}/", blocks
    blocks.close()


class HeldScoring:
    """`AppScorer.score` held at a gate until `gate.set()`, counting the scores running now and the most at once."""

    def __init__(self):
        self.lock, self.gate = threading.Lock(), threading.Event()
        self.running = self.most = 0


@pytest.fixture
def held_scoring(monkeypatch):
    held, real_score = HeldScoring(), app.AppScorer.score

    def held_score(self, *args, **kwargs):
        with held.lock:
            held.running += 1
            held.most = max(held.most, held.running)
        try:
            held.gate.wait(timeout=120)
            return real_score(self, *args, **kwargs)
        finally:
            with held.lock:
                held.running -= 1

    monkeypatch.setattr(app.AppScorer, "score", held_score)
    yield held
    held.gate.set()  # never leave a worker waiting


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_launched_app_answers_gradio_client_with_the_pipelines_scores(served, scorer, clips):
    from gradio_client import Client, handle_file

    url, _ = served
    client = Client(url, verbose=False)
    text, _, _ = client.predict(handle_file(str(clips["good"])), api_name="/score")
    assert shown_scores(text) == pytest.approx(pipeline_scores(scorer, clips["good"]), abs=0.006)
    with pytest.raises(Exception, match="silent"):
        client.predict(handle_file(str(clips["silent"])), api_name="/score")


def test_three_users_at_once_are_answered_two_at_a_time_and_the_third_sees_its_place(served, scorer, clips,
                                                                                     held_scoring):
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    url, _ = served
    clients = [Client(url, verbose=False) for _ in range(3)]  # three users, each with a session of their own
    jobs = [client.submit(handle_file(str(clips["good"])), api_name="/score") for client in clients]
    wait_until(lambda: held_scoring.running == SERVED_WORKERS)
    wait_until(lambda: any(job.status().code == Status.IN_QUEUE for job in jobs))  # the third is shown its place
    waiting = next(job.status() for job in jobs if job.status().code == Status.IN_QUEUE)
    assert waiting.rank == 0 and waiting.queue_size == 1
    held_scoring.gate.set()
    expected = pipeline_scores(scorer, clips["good"])
    for job in jobs:
        assert shown_scores(job.result(timeout=120)[0]) == pytest.approx(expected, abs=0.006)
    assert held_scoring.most == SERVED_WORKERS


def test_a_full_queue_says_so_and_the_queued_jobs_are_still_answered(served, clips, held_scoring):
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    url, _ = served
    client = Client(url, verbose=False)

    def submit():
        return client.submit(handle_file(str(clips["good"])), api_name="/score")

    running = [submit() for _ in range(SERVED_WORKERS)]
    wait_until(lambda: held_scoring.running == SERVED_WORKERS)
    waiting = [submit() for _ in range(SERVED_QUEUE)]
    wait_until(lambda: all(job.status().code == Status.IN_QUEUE for job in waiting))
    with pytest.raises(Exception, match="Queue is full"):
        submit().result(timeout=60)
    held_scoring.gate.set()
    assert all("S-MOS" in job.result(timeout=120)[0] for job in running + waiting)


def test_the_launched_app_refuses_uploads_over_its_limits_with_a_message(served, clips):
    from gradio_client import Client, handle_file

    url, blocks = served
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match=r"long\.wav is 0\.7 minutes long: this app takes files up to 0\.5 minutes"):
        client.predict(handle_file(str(clips["long"])), api_name="/score")
    assert clips["large"].stat().st_size > SERVED_LIMITS.max_mb * 1e6
    with pytest.raises(Exception, match="exceeds the maximum file size of 2000000 bytes"):  # Gradio's own refusal
        client.predict(handle_file(str(clips["large"])), api_name="/score")
    assert "files up to 0.5 minutes and 2 MB; 2 are scored at a time, up to 3 wait" in str(blocks.config)


# -- a long upload to an app in its own process: its peak memory -----------------------------------------------------

LONG_UPLOAD_MINUTES = 20
# What the app's process may grow by while it scores and draws the long upload (from its resident memory once warm).
# Reading it whole cost more than the file at the model's rate (20 min: 77 MB) and its spectrogram over a gigabyte;
# windows, blocks and sketches cost 68 MB here (2026-12-06), little of it growing with the length.
LONG_UPLOAD_GROWTH_MB = 150


def write_long_upload(path: Path, minutes: float, rate: int = 16000) -> None:
    """Speech-like noisy tone, 16-bit stereo, written 10 s at a time (never held whole)."""
    with soundfile.SoundFile(path, "w", rate, 2, subtype="PCM_16") as handle:
        for block in range(int(minutes * 6)):
            mono = noisy_tone(10.0, snr_db=5.0 if block % 7 == 0 else 20.0, seed=block, rate=rate)
            handle.write(np.stack([mono, 0.8 * mono], axis=1))


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


@pytest.fixture(scope="module")
def app_process(tmp_path_factory):
    """`python -m modeling_mtqnet app` in its own process, with a model without an SSL encoder (so that a long file
    scores in the suite's time; memory per window is the point, not the encoder), one thread."""
    folder = tmp_path_factory.mktemp("plain_model")
    model = build_model(ssl_config=None)
    model.save_pretrained(folder)
    from modeling_mtqnet import MTQNetFeatureExtractor

    MTQNetFeatureExtractor.from_model_config(model.config).save_pretrained(folder)
    port = free_port()
    env = {**os.environ, "MTQNET_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "-m", "modeling_mtqnet", "app", "--model", str(folder), "--port",
                                str(port), "--max_upload_minutes", str(LONG_UPLOAD_MINUTES + 1)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the app did not start: {process.communicate()[1][-3000:]}")
            time.sleep(0.5)
    yield url, process
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the app's memory from /proc")
def test_a_long_upload_is_scored_and_drawn_in_bounded_memory(app_process, clips, tmp_path):
    from gradio_client import Client, handle_file

    url, process = app_process
    long_upload = tmp_path / "call.wav"
    write_long_upload(long_upload, LONG_UPLOAD_MINUTES)
    client = Client(url, verbose=False)
    client.predict(handle_file(str(clips["good"])), api_name="/score")  # warm: plotting and the first window loaded
    before = memory_mb(process.pid)
    text, plot, windows = client.predict(handle_file(str(long_upload)), api_name="/score")
    after = memory_mb(process.pid)
    assert f"{LONG_UPLOAD_MINUTES * 60:.1f} s" in text and len(windows["data"]) >= LONG_UPLOAD_MINUTES * 6
    assert Path(plot).stat().st_size > 20_000
    growth = after["VmHWM"] - before["VmRSS"]
    assert growth < LONG_UPLOAD_GROWTH_MB, (before, after)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed")
def test_a_real_browser_uploads_a_file_and_sees_the_scores(served, scorer, clips, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = served
    driver = browser
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


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed")
def test_a_real_browser_is_told_at_once_that_a_file_is_too_long(served, clips, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = served
    browser.get(url)
    wait = WebDriverWait(browser, 120)
    upload = wait.until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "#score-audio input[type=file]")))
    upload.send_keys(str(clips["long"]))  # no click on Score: the page says so as soon as the file is chosen
    wait.until(lambda page: "Refused" in page.find_element(By.CSS_SELECTOR, "#score-result").text)
    shown = browser.find_element(By.CSS_SELECTOR, "#score-result").text
    assert "long.wav is 0.7 minutes long" in shown and "--max_upload_minutes" in shown, shown


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
