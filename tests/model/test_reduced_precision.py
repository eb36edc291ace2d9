"""bfloat16 inference: `from_pretrained(..., dtype=torch.bfloat16)`, `pipeline(..., dtype=...)` and
`mtqnet score --dtype bf16` run the CNN, BLSTM and SSL encoder in bfloat16 while the STFT, the sinc filters and the
score heads (attention, pooling) stay float32; scores stay close to float32's on real speech.

(bf16 training through `train.py --bf16` / the Trainer is tested in tests/training/test_training.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import modeling_mtqnet
from modeling_mtqnet import MTQNetFeatureExtractor, MTQNetForSpeechQualityAssessment
from modeling_mtqnet.pretrained import SHIPPED_TEACHER as TEACHER
from modeling_mtqnet.tables import read_table
from modeling_mtqnet.tools import score
from tests.helpers import noisy_tone

REPO = Path(__file__).resolve().parents[2]
REAL_CLIP = REPO / "tests" / "fixtures" / "real_speech_en_allison.wav"
# The aim of the bf16 path: mean absolute difference to float32 at most 0.02 (on the PESQ scale, 1-4.6).
PARITY_AIM = 0.02


def real_clips() -> list[np.ndarray]:
    """The real fixture clip clean, with white noise at 20 and 5 dB SNR, and a shorter piece of it."""
    clean, rate = soundfile.read(REAL_CLIP, dtype="float32")
    assert rate == 16000
    rng = np.random.default_rng(0)
    clips = [clean, clean[8000:40000]]
    for snr_db in (20.0, 5.0):
        noise = rng.standard_normal(clean.size).astype(np.float32)
        noise *= np.sqrt(np.mean(clean**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
        clips.append(clean + noise)
    return clips


@pytest.fixture(scope="module")
def teacher_both() -> tuple[MTQNetForSpeechQualityAssessment, MTQNetForSpeechQualityAssessment]:
    folder = modeling_mtqnet.resolve_model(TEACHER)
    return (MTQNetForSpeechQualityAssessment.from_pretrained(folder).eval(),
            MTQNetForSpeechQualityAssessment.from_pretrained(folder, dtype=torch.bfloat16).eval())


def test_bf16_load_keeps_the_sensitive_parts_float32(saved_model_dir):
    model = MTQNetForSpeechQualityAssessment.from_pretrained(saved_model_dir, dtype=torch.bfloat16).eval()
    trunk = model.mtqnet
    assert model.dtype == model.mtqnet.dtype == torch.bfloat16  # the compute dtype, not the float32 sinc edges
    assert trunk.cnn.convs[0].weight.dtype == trunk.blstm.weight_ih_l0.dtype == torch.bfloat16
    assert trunk.ssl_encoder.dtype == trunk.dense.weight.dtype == torch.bfloat16
    assert trunk.sinc.low_hz_.dtype == trunk.sinc.band_hz_.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.heads.parameters())
    assert all(p.dtype == torch.float32 for p in model.auxiliary_heads.parameters())
    extractor = MTQNetFeatureExtractor.from_pretrained(saved_model_dir)
    clips = [noisy_tone(0.7, 10.0, seed=1), noisy_tone(0.5, 0.0, seed=2)]
    with torch.no_grad():
        half = model(**extractor(clips, sampling_rate=16000, return_tensors="pt"))
        full = MTQNetForSpeechQualityAssessment.from_pretrained(saved_model_dir).eval()(
            **extractor(clips, sampling_rate=16000, return_tensors="pt"))
    assert half.logits.dtype == half.frame_scores.dtype == torch.float32
    assert torch.isfinite(half.logits).all()
    assert (half.logits - full.logits).abs().max() < 0.1


def test_bf16_scores_of_real_speech_match_float32(teacher_both):
    full, half = teacher_both
    extractor = MTQNetFeatureExtractor.from_pretrained(modeling_mtqnet.resolve_model(TEACHER))
    batch = extractor(real_clips(), sampling_rate=16000, return_tensors="pt", padding=True)
    with torch.no_grad():
        reference, reduced = full(**batch).logits, half(**batch).logits
    difference = (reference - reduced).abs()
    assert difference.mean(0)[0] <= PARITY_AIM  # PESQ
    assert difference.max() < 0.1
    # The order of the conditions (clean > 20 dB > 5 dB) survives the rounding.
    assert reduced[0, 0] > reduced[2, 0] > reduced[3, 0]


def test_bf16_batch_composition_moves_scores_by_rounding_only(teacher_both):
    """A bfloat16 model is not exactly batch-invariant (kernels round differently per shape, 1 ulp is 0.4 %); the
    documented bound is 0.01. Float32 keeps the 1e-4 guarantee (tests/model/test_modeling.py)."""
    _, half = teacher_both
    extractor = MTQNetFeatureExtractor.from_pretrained(modeling_mtqnet.resolve_model(TEACHER))
    clips = real_clips()
    with torch.no_grad():
        together = half(**extractor(clips, sampling_rate=16000, return_tensors="pt", padding=True)).logits
        alone = torch.cat([half(**extractor([clip], sampling_rate=16000, return_tensors="pt")).logits
                           for clip in clips])
    assert (together - alone).abs().max() <= 0.01


def test_pipeline_takes_a_dtype():
    pipe = modeling_mtqnet.pipeline(model=TEACHER, dtype=torch.bfloat16)
    reference = modeling_mtqnet.pipeline(model=TEACHER)
    assert pipe.model.dtype == torch.bfloat16 and reference.model.dtype == torch.float32
    clip = real_clips()[2]
    half, full = pipe(clip, sampling_rate=16000), reference(clip, sampling_rate=16000)
    assert {"pesq", "stoi", "sdi"} <= set(half)
    assert abs(half["pesq"] - full["pesq"]) <= PARITY_AIM


def test_score_command_dtype(tmp_path):
    for index, clip in enumerate(real_clips()):
        soundfile.write(tmp_path / f"clip{index}.wav", clip, 16000)
    rows = {}
    for dtype in ("fp32", "bf16"):
        output = tmp_path / f"{dtype}.csv"
        score.main([str(tmp_path), "--model", TEACHER, "--output", str(output), "--dtype", dtype,
                    "--num_workers", "0", "--no_progress"])
        rows[dtype] = {row["path"]: float(row["pesq"]) for row in read_table(output)}
    assert rows["fp32"].keys() == rows["bf16"].keys() and len(rows["fp32"]) == 4
    assert np.mean([abs(rows["fp32"][path] - rows["bf16"][path]) for path in rows["fp32"]]) <= PARITY_AIM
    with pytest.raises(SystemExit):
        score.main([str(tmp_path), "--model", TEACHER, "--output", str(tmp_path / "x.csv"), "--dtype", "int8"])
    with pytest.raises(SystemExit, match="fp16 needs a GPU"):
        score.main([str(tmp_path), "--model", TEACHER, "--output", str(tmp_path / "y.csv"), "--dtype", "fp16",
                    "--device", "cpu"])
    assert not (tmp_path / "y.csv").exists()
