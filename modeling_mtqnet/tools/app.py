"""A web app to listen and look: drop in a recording, hear it, see its S-MOS / N-MOS / G-MOS and where it goes bad.

    mtqnet app [--model MODEL_DIR | SHORT_NAME] [--host 127.0.0.1] [--port 7860] [--share]
               [--max_upload_minutes 120] [--max_upload_mb 1500] [--workers 2] [--max_queue 32]

Three tabs, all scoring through the `speech-quality-assessment` pipeline (long files are windowed, silent pauses
skipped, exactly as in Python):
- Score: upload or record a clip (or pick a bundled example); the model's scores with its label names and ranges,
  the frame-score curves over the waveform and spectrogram, and per-window scores for long files.
- Compare: two versions of one clip (before / after enhancement, codec A / codec B) side by side, with B - A.
- Batch: several files into a table, downloadable as CSV, with a progress bar.

Bad input (empty, silent, near-silent, too short, corrupt) shows the package's one-line message in the page, never a
traceback. Nothing is downloaded: the model is a local folder (or a model shipped with the package), the examples
are synthesised at start-up.

Any upload in bounded memory: the pipeline reads a long file in blocks, and the pictures are drawn from a sketch
built block by block (a min / max envelope and a spectrogram of at most a few thousand columns), never from the
whole signal at its rate. Limits that say so: a file longer than `--max_upload_minutes` (read from its header, not
its samples) is refused with a message in the page before any work starts, and one larger than `--max_upload_mb`
is refused by the upload itself. Requests run on one queue: `--workers` at a time across the three tabs, at most
`--max_queue` waiting, each shown its place. Needs `gradio` (`pip install gradio`); a Hugging Face Space runs the
same app (docs/usage.md: "The web app").
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..corpus.signals import synthetic_speech
from ..pretrained import resolve_model
from ..scoring.frame_plots import SignalSketch, plot_frame_curve
from ..tables import write_table
from ..vocabulary import PIPELINE_TASK, display_name

EXAMPLE_SECONDS = 4.0
STAND_IN_WORDS = ("stand-in", "stand in", "DNSMOS")
# Defaults for a free Hugging Face Space (2 vCPU, 16 GB): a two-hour call recording is taken (any length is drawn in
# bounded memory; the model's time is the limit: about a minute for small-p835, several with an SSL encoder), 1.5 GB
# lets two hours of 48 kHz 16-bit stereo WAV through, two jobs run while the rest wait their turn in the queue.
DEFAULT_MAX_UPLOAD_MINUTES = 120.0
DEFAULT_MAX_UPLOAD_MB = 1500.0
DEFAULT_WORKERS = 2
DEFAULT_MAX_QUEUE = 32
# Every request writes a PNG (and a batch a CSV) that Gradio copies into its own cache as the request returns: the
# names cycle over this many, so a server that runs for months does not fill its disk with them.
KEPT_OUTPUT_FILES = 256
# Gradio's own cache (uploads and the copies of outputs): swept every hour of files older than four hours.
GRADIO_CACHE_SWEEP = (3600, 4 * 3600)
SCORING_QUEUE = "scoring"  # the one concurrency group of the three tabs: `workers` jobs at a time in all


_LIBC: Any = None  # the C library, loaded on first use (False where it has no malloc_trim)


def release_freed_memory() -> None:
    """Hand the memory a finished request freed back to the system (glibc's `malloc_trim`; elsewhere nothing).

    Each of Gradio's worker threads allocates from its own malloc arena, and glibc keeps what a request freed for
    later use by that arena: without this, a server's resident memory ratchets up towards the sum of every arena's
    high-water mark, not the peak of one request (benchmarks/app_load.py, after 20 short clips at once and long
    uploads: 901 MB without it, 785 MB with it, from 580 MB)."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc: nothing to trim
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)



class AppError(ValueError):
    """A request the app cannot answer; its message is shown in the page."""


@dataclass(frozen=True)
class UploadLimits:
    """What the app accepts per file: its duration (from the header) and its size on disk."""

    max_minutes: float = DEFAULT_MAX_UPLOAD_MINUTES
    max_mb: float = DEFAULT_MAX_UPLOAD_MB

    def describe(self) -> str:
        return f"files up to {self.max_minutes:g} minutes and {self.max_mb:g} MB"


@dataclass
class Scored:
    """One clip's result: the pipeline's dict, its duration at the model's rate, and the frame-curve PNG (None when
    not drawn)."""

    result: dict[str, Any]
    duration_s: float
    plot: Path | None


class AppScorer:
    """The model behind the app: a `speech-quality-assessment` pipeline, its target names, ranges and label note,
    and the upload limits."""

    def __init__(self, model: str | os.PathLike, plot_dir: str | os.PathLike | None = None,
                 limits: UploadLimits = UploadLimits()):
        from transformers import pipeline

        from ..scoring.loading import load_model

        folder = Path(model)
        if not (folder / "config.json").is_file():
            raise AppError(f"{model} is not a saved MTQ-Net folder (no config.json): pass --model MODEL_DIR")
        loaded, extractor = load_model(str(folder))
        self.pipe = pipeline(PIPELINE_TASK, model=loaded, feature_extractor=extractor, device="cpu")
        self.names = list(loaded.config.target_names)
        self.ranges = list(loaded.config.target_ranges)
        self.rate = extractor.sampling_rate
        self.model_name = "/".join(folder.resolve().parts[-2:])  # e.g. demo/model: "model" alone says little
        self.labels_note = labels_note(folder)
        self.limits = limits
        self.plot_dir = Path(plot_dir or tempfile.mkdtemp(prefix="mtqnet_app_"))
        self.plot_dir.mkdir(parents=True, exist_ok=True)
        self._outputs = itertools.count()  # next() is atomic: the queue's workers never get the same number

    def output_path(self, name: str) -> Path:
        """A path for one request's output file, named `name` in a folder whose number cycles (KEPT_OUTPUT_FILES)."""
        folder = self.plot_dir / f"request_{next(self._outputs) % KEPT_OUTPUT_FILES}"
        folder.mkdir(exist_ok=True)
        return folder / name

    def check_upload(self, audio: str | None, what: str = "the clip") -> Any:
        """Refuse, from the file's size and header alone, an upload over the limits (an `AppError` that says which
        limit and how to pass it); returns soundfile's header info (None when the header is unreadable: scoring then
        says why)."""
        import soundfile

        if not audio:
            raise AppError(f"No audio for {what}: upload or record a clip first")
        name = Path(audio).name
        try:
            size_mb = os.path.getsize(audio) / 1e6
        except OSError:
            return None  # scoring says that it does not exist
        if size_mb > self.limits.max_mb:
            raise AppError(f"{name} is {size_mb:,.1f} MB: this app takes files up to {self.limits.max_mb:g} MB "
                           "(mtqnet app --max_upload_mb); a compressed copy (FLAC) or `mtqnet score` takes it")
        try:
            info = soundfile.info(audio)
        except Exception:  # noqa: BLE001 - an undecodable file gets the package's message when it is scored
            return None
        minutes = info.frames / info.samplerate / 60 if info.samplerate else 0.0
        if minutes > self.limits.max_minutes:
            raise AppError(f"{name} is {minutes:,.1f} minutes long: this app takes files up to "
                           f"{self.limits.max_minutes:g} minutes (mtqnet app --max_upload_minutes); cut it, or score "
                           "it with `mtqnet score`, which takes any length")
        return info

    def score(self, audio: str | None, what: str = "the clip", draw: bool = True) -> Scored:
        """Score one uploaded / recorded file; an `AppError` with the package's message when it cannot be.

        The pipeline gets the path: a long file is read in blocks and windowed, never held whole. The picture is
        drawn from a `SignalSketch` of one more pass over the file's blocks, so memory stays bounded at any length."""
        info = self.check_upload(audio, what)
        name = Path(audio).name
        try:
            result = self.pipe(str(audio))
            sketch = SignalSketch.of_file(audio, self.rate) if draw else None
        except (ValueError, FileNotFoundError, RuntimeError) as error:
            # The pipeline names the file by its full (temporary, server-side) path: the page shows its name.
            message = " ".join(str(error).replace(str(audio), name).split())
            raise AppError(message if name in message else f"{name}: {message}") from None
        if sketch is None:
            return Scored(result, info.frames / info.samplerate if info is not None else math.nan, None)
        plot = plot_frame_curve(self.output_path("frames.png"), name, result, sketch, self.rate, self.names,
                                spectrogram=True)
        return Scored(result, sketch.duration_s, plot)

    def upload_note(self, audio: str | None) -> str:
        """What the page says as soon as a file is chosen, before any work: its length, or why it is refused."""
        if not audio:
            return ""
        try:
            info = self.check_upload(audio)
        except AppError as error:
            return f"**Refused:** {error}"
        if info is None:
            return ""
        return f"{Path(audio).name}: {info.frames / info.samplerate:.1f} s at {info.samplerate} Hz. Press Score."

    def range_of(self, name: str) -> str:
        value_range = self.ranges[self.names.index(name)]
        return f"{value_range[0]:g} to {value_range[1]:g}" if value_range else "unbounded"


def labels_note(folder: Path) -> str:
    """What the model's labels were, from its card (README.md): the paragraph that says they are stand-ins, if any."""
    card = folder / "README.md"
    if card.is_file():
        for paragraph in card.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            if any(word.lower() in paragraph.lower() for word in STAND_IN_WORDS):
                return " ".join(paragraph.split())
    return ("The scores are what this model learned to predict from its training labels; its model card says what "
            "they were (3QUEST, a listening test, or stand-ins such as DNSMOS P.835).")


# -- the tabs' functions (plain Python, tested without a browser) ---------------------------------------------------


def scores_markdown(scorer: AppScorer, result: dict[str, Any]) -> str:
    lines = ["| score | value | range |", "|---|---|---|"]
    lines += [f"| {display_name(name)} | **{result[name]:.2f}** | {scorer.range_of(name)} |" for name in scorer.names]
    return "\n".join(lines)


def windows_rows(scorer: AppScorer, result: dict[str, Any]) -> list[list[Any]]:
    """Per-window scores of a long (windowed) file: start, end, then one column per target."""
    return [[round(chunk["start_s"], 2), round(chunk["end_s"], 2), *(round(chunk[name], 3) for name in scorer.names)]
            for chunk in result.get("chunks") or []]


def score_tab(scorer: AppScorer, audio: str | None) -> tuple[str, str, list[list[Any]]]:
    """Score tab: (scores as markdown, frame-curve PNG path, per-window rows)."""
    scored = scorer.score(audio)
    duration = scored.duration_s
    windowed = len(scored.result.get("chunks") or [])
    text = scores_markdown(scorer, scored.result) + f"\n\n{duration:.1f} s" + (
        f", scored in {windowed} windows (their mean; the table lists each)" if windowed else "")
    return text, str(scored.plot), windows_rows(scorer, scored.result)


def compare_tab(scorer: AppScorer, audio_a: str | None, audio_b: str | None) -> tuple[str, str, str]:
    """Compare tab: (a table of A, B and B - A, A's frame-curve PNG, B's)."""
    first, second = scorer.score(audio_a, "clip A"), scorer.score(audio_b, "clip B")
    lines = ["| score | A | B | B - A |", "|---|---|---|---|"]
    for name in scorer.names:
        a, b = first.result[name], second.result[name]
        lines.append(f"| {display_name(name)} | {a:.2f} | {b:.2f} | **{b - a:+.2f}** |")
    return "\n".join(lines), str(first.plot), str(second.plot)


def batch_tab(scorer: AppScorer, files: Sequence[str] | None, progress: Any = None) -> tuple[list[list[Any]], str]:
    """Batch tab: (one row per file: name, scores, error; the same as a CSV file). A bad file gets its reason and
    the batch carries on."""
    if not files:
        raise AppError("No files: add one or more audio files first")
    iterate = progress.tqdm(files, desc="scoring") if progress is not None else files
    rows = []
    for path in iterate:
        path = str(getattr(path, "name", path))
        row: dict[str, Any] = {"file": Path(path).name, **dict.fromkeys(scorer.names), "error": ""}
        try:
            result = scorer.score(path, draw=False).result  # the tab shows no pictures: none drawn
            row.update({name: round(float(result[name]), 4) for name in scorer.names})
        except AppError as error:
            row["error"] = str(error)
        rows.append(row)
    columns = ["file", *scorer.names, "error"]
    csv_path = write_table(scorer.output_path(f"scores_{len(rows)}_files.csv"), rows, columns)
    return [[row[column] for column in columns] for row in rows], str(csv_path)


def make_examples(folder: str | os.PathLike, rate: int = 16000, seed: int = 0) -> list[str]:
    """Three synthetic speech clips written at start-up (nothing is downloaded): clean, in white noise at 5 dB SNR,
    and clean with a 1 s burst of loud noise in the middle (where the frame curves should dip)."""
    import soundfile

    rng = np.random.default_rng(seed)
    speech = synthetic_speech(EXAMPLE_SECONDS, rng, rate)
    power = float(np.mean(speech**2))
    noise = rng.standard_normal(speech.size)
    noisy = speech + noise * math.sqrt(power / 10 ** 0.5)
    burst = speech.copy()
    middle = slice(int(1.5 * rate), int(2.5 * rate))
    burst[middle] += noise[middle] * math.sqrt(power * 10)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, signal in (("clean", speech), ("white_noise_5dB", noisy), ("noise_burst", burst)):
        path = folder / f"example_{name}.wav"
        soundfile.write(path, 0.9 * signal / np.max(np.abs(signal)), rate, subtype="PCM_16")
        paths.append(str(path))
    return paths


# -- the page -------------------------------------------------------------------------------------------------------


def build_app(scorer: AppScorer, examples: Sequence[str] = (), workers: int = DEFAULT_WORKERS,
              max_queue: int | None = DEFAULT_MAX_QUEUE):
    """The Gradio Blocks of the app, its queue set (not launched). API names: /score, /compare, /batch.

    The three tabs share one concurrency group: `workers` jobs run at a time in all (each holds a model's window of
    memory), the rest wait in a queue of at most `max_queue` (None: unbounded), each shown its position."""
    import gradio as gr

    def shown(function):
        def run(*args, **kwargs):
            try:
                return function(scorer, *args, **kwargs)
            except AppError as error:
                raise gr.Error(str(error), print_exception=False) from None
            finally:
                release_freed_memory()
        run.__name__ = function.__name__
        return run

    scoring = {"concurrency_limit": workers, "concurrency_id": SCORING_QUEUE}
    waiting = f"up to {max_queue} wait their turn" if max_queue else "the rest wait their turn"
    window_headers = ["start (s)", "end (s)", *(display_name(name) for name in scorer.names)]
    with gr.Blocks(title="MTQ-Net speech quality", delete_cache=GRADIO_CACHE_SWEEP) as app:
        gr.Markdown(f"# MTQ-Net speech quality\nModel: `{scorer.model_name}`. Scores: "
                    f"{', '.join(display_name(name) for name in scorer.names)}, from the recording alone (no clean "
                    f"reference). This app takes {scorer.limits.describe()}; {workers} are scored at a time, "
                    f"{waiting}.\n\n*{scorer.labels_note}*")
        with gr.Tab("Score"):
            with gr.Row():
                with gr.Column():
                    audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Recording",
                                     elem_id="score-audio")
                    score_button = gr.Button("Score", variant="primary", elem_id="score-button")
                    if examples:
                        gr.Examples(examples=[[path] for path in examples], inputs=[audio], label="Examples")
                with gr.Column():
                    scores = gr.Markdown(elem_id="score-result")
            curves = gr.Image(type="filepath", label="Frame scores over the waveform and spectrogram")
            windows = gr.Dataframe(headers=window_headers, label="Windows of a long file", interactive=False)
            # Off the queue: a file over the limits is refused as soon as it is chosen, from its header alone.
            audio.change(scorer.upload_note, inputs=[audio], outputs=[scores], queue=False, api_visibility="private")
            score_button.click(shown(score_tab), inputs=[audio], outputs=[scores, curves, windows], api_name="score",
                               **scoring)
        with gr.Tab("Compare"):
            with gr.Row():
                audio_a = gr.Audio(sources=["upload", "microphone"], type="filepath", label="A (e.g. before)")
                audio_b = gr.Audio(sources=["upload", "microphone"], type="filepath", label="B (e.g. after)")
            compare_button = gr.Button("Compare", variant="primary")
            difference = gr.Markdown()
            for clip in (audio_a, audio_b):
                clip.change(scorer.upload_note, inputs=[clip], outputs=[difference], queue=False,
                            api_visibility="private")
            with gr.Row():
                curves_a = gr.Image(type="filepath", label="A")
                curves_b = gr.Image(type="filepath", label="B")
            compare_button.click(shown(compare_tab), inputs=[audio_a, audio_b],
                                 outputs=[difference, curves_a, curves_b], api_name="compare", **scoring)
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", type="filepath", label="Audio files")
            batch_button = gr.Button("Score all", variant="primary")
            table = gr.Dataframe(headers=["file", *(display_name(name) for name in scorer.names), "error"],
                                 label="Scores", interactive=False)
            download = gr.File(label="CSV")

            def batch(paths, progress=gr.Progress()):
                return shown(batch_tab)(paths, progress=progress)

            batch_button.click(batch, inputs=[files], outputs=[table, download], api_name="batch", **scoring)
    app.queue(default_concurrency_limit=workers, max_size=max_queue)
    return app


def launch(model: str, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           block: bool = True, limits: UploadLimits = UploadLimits(), workers: int = DEFAULT_WORKERS,
           max_queue: int | None = DEFAULT_MAX_QUEUE):
    """Build the scorer, the examples and the page, and serve it; returns the Blocks (already launched). Gradio
    refuses an upload over `limits.max_mb` while it arrives (its message in the page), the app one over
    `limits.max_minutes` from its header."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    scorer = AppScorer(model, limits=limits)
    app = build_app(scorer, make_examples(scorer.plot_dir / "examples", scorer.rate), workers, max_queue)
    app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
               allowed_paths=[str(scorer.plot_dir)], max_file_size=int(limits.max_mb * 1e6))
    return app


# What `mtqnet app` shows without --model: the shipped S/N/G model.
DEFAULT_MODEL = "mtqnet/small-p835"


def parse_args(argv: Sequence[str] | None = None, prog: str | None = "mtqnet app") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="a saved MTQ-Net folder (what `mtqnet train` writes) or a shipped model's short name "
                             "(default: %(default)s, the shipped S/N/G model: DNSMOS P.835 stand-ins, not 3QUEST)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public link (needs the internet)")
    parser.add_argument("--max_upload_minutes", type=float, default=DEFAULT_MAX_UPLOAD_MINUTES,
                        help="longest file taken, from its header; a longer one is refused with a message before any "
                             "work (default: %(default)g)")
    parser.add_argument("--max_upload_mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help="largest file taken, in MB (10^6 bytes); refused while it uploads (default: %(default)g)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="requests scored at a time, all tabs together (default: %(default)s)")
    parser.add_argument("--max_queue", type=int, default=DEFAULT_MAX_QUEUE,
                        help="requests that may wait, each shown its position; more are told the queue is full "
                             "(0: no bound; default: %(default)s)")
    args = parser.parse_args(argv)
    if args.max_upload_minutes <= 0 or args.max_upload_mb <= 0:
        parser.error("--max_upload_minutes and --max_upload_mb must be positive")
    if args.workers < 1 or args.max_queue < 0:
        parser.error("--workers must be at least 1 and --max_queue at least 0")
    args.model = resolve_model(args.model)
    return args


def main(argv: Sequence[str] | None = None, prog: str | None = "mtqnet app") -> int:
    args = parse_args(argv, prog)
    launch(args.model, args.host, args.port, args.share, limits=UploadLimits(args.max_upload_minutes,
                                                                                 args.max_upload_mb),
           workers=args.workers, max_queue=args.max_queue or None)
    return 0


__all__ = ["AppScorer", "AppError", "UploadLimits", "build_app", "launch", "make_examples", "score_tab", "compare_tab",
           "batch_tab"]
