"""Peak memory and time of scoring one long file (10, 30 and 60 minutes) through the pipeline and `mtqnet score`.

Each measurement runs in a fresh Python process and reports that process's peak resident memory (ru_maxrss), so
the figures include Python, torch and the model. The files are 22.05 kHz stereo 16-bit WAV (resampled to 16 kHz and
downmixed while read), a speech-like harmonic tone with noise, written block by block. The model is the `small`
preset (no SSL encoder) with random weights and the `tiny` preset (a 2-layer WavLM-shaped encoder): memory does not
depend on the weights. Both entry points window long audio (10 s windows) and read the file in blocks.

Run from the repository root, with nothing else running:
    .venv/bin/python benchmarks/long_audio.py [--minutes 10 30 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RATE = 22050

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
kind, model, path = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
if kind == "pipeline":
    from transformers import pipeline
    import modeling_mtqnet  # registers the task
    result = pipeline("speech-quality-assessment", model=model)(path)
    windows = len(result.get("chunks") or [0])
else:
    from modeling_mtqnet.tools.score import main
    main([path, "--model", model, "--output", sys.argv[5], "--num_workers", "0", "--no_progress"])
    windows = None
seconds = time.perf_counter() - start
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds,
                  "windows": windows}))
"""


def write_long_file(path: Path, minutes: float, seed: int = 0) -> None:
    import soundfile

    rng = np.random.default_rng(seed)
    block = RATE * 10
    with soundfile.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as handle:
        for index in range(int(minutes * 6)):
            t = (np.arange(block) + index * block) / RATE
            tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6)) * (np.sin(2 * np.pi * 0.7 * t) > 0)
            signal = 0.1 * tone + 0.02 * rng.standard_normal(block)
            handle.write(np.stack([signal, 0.8 * signal], axis=1))


def save_model(folder: Path, preset: str) -> Path:
    import torch

    from modeling_mtqnet import MTQNetConfig, MTQNetFeatureExtractor, MTQNetForSpeechQualityAssessment

    torch.manual_seed(0)
    model = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset(preset, auxiliary_target_names=[]))
    model.save_pretrained(folder / preset)
    MTQNetFeatureExtractor.from_model_config(model.config).save_pretrained(folder / preset)
    return folder / preset


def measure(kind: str, model: Path, audio: Path, threads: int, work: Path) -> dict:
    output = work / f"scores_{audio.stem}_{model.name}.csv"
    output.unlink(missing_ok=True)
    completed = subprocess.run([sys.executable, "-c", CHILD, kind, str(model), str(audio), str(threads), str(output)],
                               capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-2000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", nargs="+", type=float, default=[10, 30, 60])
    parser.add_argument("--presets", nargs="+", default=["small", "tiny"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mtqnet_long_") as tmp:
        work = Path(tmp)
        models = [save_model(work, preset) for preset in args.presets]
        print("| preset | entry point | audio | file size | peak RSS | time | RTF |")
        print("|---|---|---|---|---|---|---|")
        for minutes in args.minutes:
            audio = work / f"long_{minutes:g}min.wav"
            write_long_file(audio, minutes)
            size = audio.stat().st_size / 1e6
            for model in models:
                for kind in ("pipeline", "mtqnet score"):
                    figures = measure("pipeline" if kind == "pipeline" else "cli", model, audio, args.threads, work)
                    print(f"| {model.name} | {kind} | {minutes:g} min | {size:.0f} MB | {figures['peak_mb']:.0f} MB | "
                          f"{figures['seconds']:.1f} s | {figures['seconds'] / (minutes * 60):.4f} |", flush=True)
            audio.unlink()


if __name__ == "__main__":
    main()
