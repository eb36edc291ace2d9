"""Throughput of `mtqnet-score` (presets small and mosa-net) beside DNSMOS P.835 (speechmos) on the same files.

The script writes `--files` random-speech-like WAV files of `--duration_s` seconds, saves an untrained model per
preset ("small" as it ships, without an SSL encoder; "mosa-net" with its WavLM-base-sized encoder; random weights:
speed does not depend on them), and times, in this one run:
- `mtqnet-score FILES --model M --output OUT.csv` end to end (reading, resampling, scoring, writing), per preset;
- `speechmos.dnsmos.run(audio, 16000)` on the same decoded audio (DNSMOS's ONNX models, CPU).
Reported: files per second and real-time factor (processing seconds per audio second).

Run from the repository root:
    .venv/bin/python benchmarks/score_speed.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from modeling_mtqnet import MTQNetConfig, MTQNetFeatureExtractor, MTQNetForSpeechQualityAssessment
from modeling_mtqnet.tools.score import main as score_main

SAMPLING_RATE = 16000
PRESETS = {"small": {}, "mosa-net": {}}


def write_files(folder: Path, count: int, duration_s: float, seed: int) -> list[Path]:
    """Harmonic, syllable-gated tones with noise: cheap stand-ins for speech files."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * SAMPLING_RATE)) / SAMPLING_RATE
    paths = []
    for index in range(count):
        f0 = rng.uniform(90, 220)
        voiced = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10)) * (np.sin(2 * np.pi * 4 * t) > 0)
        audio = 0.2 * voiced / np.max(np.abs(voiced)) + 0.01 * rng.uniform(0.2, 3) * rng.standard_normal(t.size)
        path = folder / f"clip{index:03d}.wav"
        soundfile.write(path, audio.astype(np.float32), SAMPLING_RATE)
        paths.append(path)
    return paths


def save_model(folder: Path, preset: str) -> Path:
    torch.manual_seed(0)
    config = MTQNetConfig.from_preset(preset, **PRESETS[preset])
    model = MTQNetForSpeechQualityAssessment(config).drop_auxiliary_heads()
    model.save_pretrained(folder)
    MTQNetFeatureExtractor.from_model_config(config).save_pretrained(folder)
    return folder


def time_mtqnet(paths: list[Path], model_dir: Path, output: Path, batch_size: int) -> float:
    start = time.perf_counter()
    score_main([*map(str, paths), "--model", str(model_dir), "--output", str(output), "--batch_size",
                str(batch_size), "--no_progress", "--chunk_length_s", "0"])
    return time.perf_counter() - start


def time_dnsmos(paths: list[Path]) -> float:
    from speechmos import dnsmos

    audio = [soundfile.read(path, dtype="float32")[0] for path in paths]
    dnsmos.run(audio[0], SAMPLING_RATE)  # loads the ONNX sessions once, as a long run would
    start = time.perf_counter()
    for clip in audio:
        dnsmos.run(np.clip(clip, -1, 1), SAMPLING_RATE)
    return time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=16, help="number of files")
    parser.add_argument("--duration_s", type=float, default=5.0, help="seconds per file")
    parser.add_argument("--batch_size", type=int, default=4, help="mtqnet-score --batch_size")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    audio_seconds = args.files * args.duration_s
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "audio").mkdir()
        paths = write_files(scratch / "audio", args.files, args.duration_s, args.seed)
        for preset in PRESETS:
            model_dir = save_model(scratch / preset, preset)
            seconds = time_mtqnet(paths, model_dir, scratch / f"{preset}.csv", args.batch_size)
            rows.append((f"mtqnet-score, {preset}", seconds))
        rows.append(("DNSMOS P.835 (speechmos)", time_dnsmos(paths)))
    print(f"{args.files} files x {args.duration_s:g} s, torch threads {args.threads}\n")
    print("| scorer | seconds | files/s | RTF |\n|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {args.files / seconds:.2f} | {seconds / audio_seconds:.3f} |")


if __name__ == "__main__":
    main()
