"""A web app to listen and look: drop in a recording, hear it, see its S-MOS / N-MOS / G-MOS and where it goes bad.

    mtqnet app [--model MODEL_DIR | SHORT_NAME] [--host 127.0.0.1] [--port 7860] [--share]

Three tabs, all scoring through the `speech-quality-assessment` pipeline (long files are windowed, silent pauses
skipped, exactly as in Python):
- Score: upload or record a clip (or pick a bundled example); the model's scores with its label names and ranges,
  the frame-score curves over the waveform and spectrogram, and per-window scores for long files.
- Compare: two versions of one clip (before / after enhancement, codec A / codec B) side by side, with B - A.
- Batch: several files into a table, downloadable as CSV, with a progress bar.

Bad input (empty, silent, near-silent, too short, corrupt) shows the package's one-line message in the page, never a
traceback. Nothing is downloaded: the model is a local folder (or a model shipped with the package), the examples
are synthesised at start-up. Requests run on a queue with two workers, so one slow request does not block the page.
Needs `gradio` (`pip install gradio`); a Hugging Face Space runs the same app (README: "The web app").
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..corpus.signals import synthetic_speech
from ..model.feature_extraction_mtqnet import load_audio
from ..pretrained import resolve_model
from ..tables import write_table
from ..vocabulary import display_name
from .score import plot_frame_curve

EXAMPLE_SECONDS = 4.0
STAND_IN_WORDS = ("stand-in", "stand in", "DNSMOS")


class AppError(ValueError):
    """A request the app cannot answer; its message is shown in the page."""


@dataclass
class Scored:
    """One clip's result: the pipeline's dict, its waveform at the model's rate, and the frame-curve PNG."""

    result: dict[str, Any]
    waveform: np.ndarray
    plot: Path


class AppScorer:
    """The model behind the app: a `speech-quality-assessment` pipeline, its target names, ranges and label note."""

    def __init__(self, model: str | os.PathLike, plot_dir: str | os.PathLike | None = None):
        from transformers import pipeline

        from .. import PIPELINE_TASK
        from .score import load_model

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
        self.plot_dir = Path(plot_dir or tempfile.mkdtemp(prefix="mtqnet_app_"))
        self.plot_dir.mkdir(parents=True, exist_ok=True)
        self._plots = 0

    def score(self, audio: str | None, what: str = "the clip") -> Scored:
        """Score one uploaded / recorded file; an `AppError` with the package's message when it cannot be."""
        if not audio:
            raise AppError(f"No audio for {what}: upload or record a clip first")
        try:
            # Read once: the waveform drawn is the one scored (a long upload is still windowed by the pipeline).
            waveform = load_audio(audio, None, self.rate, name=Path(audio).name)
            result = self.pipe({"array": waveform, "sampling_rate": self.rate})
        except (ValueError, FileNotFoundError, RuntimeError) as error:
            message = " ".join(str(error).split())
            name = Path(audio).name
            raise AppError(message if name in message else f"{name}: {message}") from None
        self._plots += 1
        plot = plot_frame_curve(self.plot_dir / f"frames_{self._plots}.png", Path(audio).name, result, waveform,
                                self.rate, self.names, spectrogram=True)
        return Scored(result, waveform, plot)

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
    duration = scored.waveform.size / scorer.rate
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
            result = scorer.score(path).result
            row.update({name: round(float(result[name]), 4) for name in scorer.names})
        except AppError as error:
            row["error"] = str(error)
        rows.append(row)
    columns = ["file", *scorer.names, "error"]
    csv_path = write_table(scorer.plot_dir / f"scores_{len(rows)}_files.csv", rows, columns)
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


def build_app(scorer: AppScorer, examples: Sequence[str] = ()):
    """The Gradio Blocks of the app (not launched). API names: /score, /compare, /batch."""
    import gradio as gr

    def shown(function):
        def run(*args, **kwargs):
            try:
                return function(scorer, *args, **kwargs)
            except AppError as error:
                raise gr.Error(str(error), print_exception=False) from None
        run.__name__ = function.__name__
        return run

    window_headers = ["start (s)", "end (s)", *(display_name(name) for name in scorer.names)]
    with gr.Blocks(title="MTQ-Net speech quality") as app:
        gr.Markdown(f"# MTQ-Net speech quality\nModel: `{scorer.model_name}`. Scores: "
                    f"{', '.join(display_name(name) for name in scorer.names)}, from the recording alone (no clean "
                    f"reference).\n\n*{scorer.labels_note}*")
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
            score_button.click(shown(score_tab), inputs=[audio], outputs=[scores, curves, windows], api_name="score",
                               concurrency_limit=2)
        with gr.Tab("Compare"):
            with gr.Row():
                audio_a = gr.Audio(sources=["upload", "microphone"], type="filepath", label="A (e.g. before)")
                audio_b = gr.Audio(sources=["upload", "microphone"], type="filepath", label="B (e.g. after)")
            compare_button = gr.Button("Compare", variant="primary")
            difference = gr.Markdown()
            with gr.Row():
                curves_a = gr.Image(type="filepath", label="A")
                curves_b = gr.Image(type="filepath", label="B")
            compare_button.click(shown(compare_tab), inputs=[audio_a, audio_b],
                                 outputs=[difference, curves_a, curves_b], api_name="compare", concurrency_limit=2)
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", type="filepath", label="Audio files")
            batch_button = gr.Button("Score all", variant="primary")
            table = gr.Dataframe(headers=["file", *(display_name(name) for name in scorer.names), "error"],
                                 label="Scores", interactive=False)
            download = gr.File(label="CSV")

            def batch(paths, progress=gr.Progress()):
                return shown(batch_tab)(paths, progress=progress)

            batch_button.click(batch, inputs=[files], outputs=[table, download], api_name="batch",
                               concurrency_limit=2)
    return app


def launch(model: str, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           block: bool = True):
    """Build the scorer, the examples and the page, and serve it; returns the Blocks (already launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    scorer = AppScorer(model)
    app = build_app(scorer, make_examples(scorer.plot_dir / "examples", scorer.rate))
    app.queue(default_concurrency_limit=2)
    app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
               allowed_paths=[str(scorer.plot_dir)])
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
    args = parser.parse_args(argv)
    args.model = resolve_model(args.model)
    return args


def main(argv: Sequence[str] | None = None, prog: str | None = "mtqnet app") -> int:
    args = parse_args(argv, prog)
    launch(args.model, args.host, args.port, args.share)
    return 0


__all__ = ["AppScorer", "AppError", "build_app", "launch", "make_examples", "score_tab", "compare_tab", "batch_tab"]
