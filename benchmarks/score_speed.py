"""Throughput of `mtqnet-score` (presets small-distillmos, small and mosa-net, fp32 and bf16) beside DNSMOS P.835
(speechmos) and Distill-MOS on the same files, and the bf16-against-fp32 score difference of the shipped teacher on
real files.

The script writes `--files` random-speech-like WAV files of `--duration_s` seconds, saves an untrained model per
preset ("small-distillmos" as the shipped models are built, with the pretrained Distill-MOS encoder; "small" without an
SSL encoder; "mosa-net" with its WavLM-base-sized encoder; random weights: speed does not depend on them), and times,
in this one run:
- `mtqnet-score FILES --model M --output OUT.csv --dtype D` end to end (reading, resampling, scoring, writing), per
  preset, dtype and torch thread count;
- `speechmos.dnsmos.run(audio, 16000)` on the same decoded audio (DNSMOS's ONNX models, CPU; onnxruntime picks its
  own thread count);
- Distill-MOS (the published model, `DistillMosForQualityScore` on the shipped encoder folder) on the same audio, one
  file at a time at the largest thread count.
Reported: files per second and real-time factor (processing seconds per audio second).

With `--parity_dir DIR` (e.g. the test part of the teacher's corpus), the shipped teacher scores up to
`--parity_files` WAV files of DIR in fp32 and in bf16 and the mean / largest absolute difference per target is
printed: the precision cost of bf16 on real speech.

Run from the repository root:
    .venv/bin/python benchmarks/score_speed.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from modeling_mtqnet import MTQNetConfig, MTQNetFeatureExtractor, MTQNetForSpeechQualityAssessment
from modeling_mtqnet.pretrained import SHIPPED_TEACHER as TEACHER
from modeling_mtqnet.tables import read_table
from modeling_mtqnet.tools.score import main as score_main

SAMPLING_RATE = 16000
PRESETS = {"small-distillmos": {}, "small": {}, "mosa-net": {}}


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


def time_mtqnet(paths: list[Path], model_dir: Path | str, output: Path, batch_size: int, dtype: str = "fp32") -> float:
    start = time.perf_counter()
    score_main([*map(str, paths), "--model", str(model_dir), "--output", str(output), "--batch_size",
                str(batch_size), "--no_progress", "--chunk_length_s", "0", "--dtype", dtype])
    return time.perf_counter() - start


def parity(paths: list[Path], scratch: Path, batch_size: int) -> list[str]:
    """Mean and largest |bf16 - fp32| per target of the shipped teacher on `paths`, as table rows."""
    scores = {}
    for dtype in ("fp32", "bf16"):
        output = scratch / f"parity_{dtype}.csv"
        time_mtqnet(paths, TEACHER, output, batch_size, dtype)
        scores[dtype] = {row["path"]: row for row in read_table(output) if not row["error"]}
    shared = sorted(set(scores["fp32"]) & set(scores["bf16"]))
    rows = []
    for target in ("pesq", "stoi", "sdi"):
        gaps = np.array([abs(float(scores["fp32"][p][target]) - float(scores["bf16"][p][target])) for p in shared])
        rows.append(f"| {target} | {len(shared)} | {gaps.mean():.4f} | {gaps.max():.4f} |")
    return rows


def time_dnsmos(paths: list[Path]) -> float:
    from speechmos import dnsmos

    audio = [soundfile.read(path, dtype="float32")[0] for path in paths]
    dnsmos.run(audio[0], SAMPLING_RATE)  # loads the ONNX sessions once, as a long run would
    start = time.perf_counter()
    for clip in audio:
        dnsmos.run(np.clip(clip, -1, 1), SAMPLING_RATE)
    return time.perf_counter() - start


def time_distillmos(paths: list[Path]) -> float:
    from modeling_mtqnet.model.modeling_distillmos import DistillMosForQualityScore
    from modeling_mtqnet.pretrained import encoder_path

    model = DistillMosForQualityScore.from_pretrained(encoder_path()).eval()
    audio = [torch.as_tensor(soundfile.read(path, dtype="float32")[0])[None] for path in paths]
    start = time.perf_counter()
    with torch.no_grad():
        for clip in audio:
            model(clip)
    return time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=16, help="number of files")
    parser.add_argument("--duration_s", type=float, default=5.0, help="seconds per file")
    parser.add_argument("--batch_size", type=int, default=4, help="mtqnet-score --batch_size")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to measure")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--parity_dir", type=Path, default=None,
                        help="real WAV files for the shipped teacher's bf16-vs-fp32 difference")
    parser.add_argument("--parity_files", type=int, default=400, help="most files of --parity_dir")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ["MTQNET_THREADS"] = "all"  # the thread count below is the one measured, not the free-core choice
    audio_seconds = args.files * args.duration_s
    rows = []
    parity_rows: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "audio").mkdir()
        paths = write_files(scratch / "audio", args.files, args.duration_s, args.seed)
        for preset in PRESETS:
            model_dir = save_model(scratch / preset, preset)
            for threads in args.threads:
                torch.set_num_threads(threads)
                for dtype in args.dtypes:
                    seconds = time_mtqnet(paths, model_dir, scratch / f"{preset}_{dtype}_{threads}.csv",
                                          args.batch_size, dtype)
                    rows.append((f"mtqnet-score, {preset}, {dtype}", threads, seconds))
        torch.set_num_threads(max(args.threads))
        rows.append(("DNSMOS P.835 (speechmos)", "onnxruntime's", time_dnsmos(paths)))
        rows.append(("Distill-MOS (published model)", max(args.threads), time_distillmos(paths)))
        if args.parity_dir is not None:
            real = sorted(args.parity_dir.glob("*.wav"))[: args.parity_files]
            if not real:
                raise SystemExit(f"no .wav files in {args.parity_dir}")
            parity_rows = parity(real, scratch, args.batch_size)
    print(f"{args.files} files x {args.duration_s:g} s, batch {args.batch_size}, nothing else running\n")
    print("| scorer | torch threads | seconds | files/s | RTF |\n|---|---|---|---|---|")
    for name, threads, seconds in rows:
        print(f"| {name} | {threads} | {seconds:.1f} | {args.files / seconds:.2f} | {seconds / audio_seconds:.3f} |")
    if parity_rows:
        print(f"\nShipped teacher ({TEACHER}), bf16 against fp32 on {args.parity_dir}:\n")
        print("| target | files | mean abs difference | largest |\n|---|---|---|---|")
        print("\n".join(parity_rows))


if __name__ == "__main__":
    main()
