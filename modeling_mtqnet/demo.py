"""The main job on the embedded default: build an MTQ-Net, save it, and score generated audio through every entry point.

Until the training pipeline lands (see the project's issues), the model here has untrained random weights: the
scores show the plumbing (feature extractor, model, save/load, both pipelines, frame curves), not speech quality.

    python -m modeling_mtqnet.demo --output_dir outputs/demo
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch

from . import MTQNetConfig, MTQNetFeatureExtractor, MTQNetForSpeechQualityAssessment
from .configuration_mtqnet import PRESETS


def synthetic_speech(seconds: float, sampling_rate: int, seed: int) -> np.ndarray:
    """A voiced-speech stand-in: a gliding harmonic tone with a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, np.pi))
    phase = 2 * np.pi * np.cumsum(pitch) / sampling_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t + rng.uniform(0, np.pi)), 0, None) ** 0.5
    return (0.3 * voiced * envelope / np.max(np.abs(voiced))).astype(np.float32)


def mix_at_snr(clean: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clean.size).astype(np.float32)
    gain = np.sqrt(np.mean(clean**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return clean + gain * noise


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/demo"), help="where model and audio go")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="model size (default: small)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and audio")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    from transformers import pipeline

    torch.manual_seed(args.seed)
    args.output_dir = args.output_dir.resolve()  # the check below runs in another working directory
    model_dir, audio_dir = args.output_dir / "model", args.output_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    config = MTQNetConfig.from_preset(args.preset)
    model = MTQNetForSpeechQualityAssessment(config).drop_auxiliary_heads().eval()
    model.save_pretrained(model_dir)
    MTQNetFeatureExtractor.from_model_config(config).save_pretrained(model_dir)
    print(f"Saved an untrained '{args.preset}' MTQ-Net to {model_dir}")

    clean = synthetic_speech(3.0, config.sampling_rate, args.seed)
    files = {}
    for snr in (20, 5, -5):
        path = audio_dir / f"speech_snr{snr:+d}dB.wav"
        soundfile.write(path, mix_at_snr(clean, snr, args.seed * 1000 + snr + 100), config.sampling_rate)
        files[path.name] = str(path)

    scorer = pipeline("speech-quality-assessment", model=str(model_dir))
    results = {name: {k: v for k, v in scorer(path).items() if k in config.target_names} for name, path in files.items()}
    print("\nScores from pipeline('speech-quality-assessment') (untrained weights: plumbing only):")
    print("| file | " + " | ".join(config.target_names) + " |")
    print("|---|" + "---|" * len(config.target_names))
    for name, scores in results.items():
        print(f"| {name} | " + " | ".join(f"{scores[t]:.3f}" for t in config.target_names) + " |")

    # A fresh process that only has transformers: the folder's own code (trust_remote_code) must give the same scores.
    check = (
        "import json, sys; from transformers import AutoModel, AutoFeatureExtractor;"
        f"m = AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval();"
        f"fe = AutoFeatureExtractor.from_pretrained({str(model_dir)!r}, trust_remote_code=True);"
        f"print(json.dumps(m(**fe({next(iter(files.values()))!r}, return_tensors='pt')).logits[0].tolist()))"
    )
    remote = json.loads(subprocess.run([sys.executable, "-c", check], check=True, capture_output=True, text=True,
                                       cwd=args.output_dir).stdout.strip().splitlines()[-1])
    first = results[next(iter(files))]
    difference = max(abs(a - first[t]) for a, t in zip(remote, config.target_names))
    print(f"\nAutoModel.from_pretrained(trust_remote_code=True) in a fresh process: max difference {difference:.2e}")
    (args.output_dir / "scores.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
