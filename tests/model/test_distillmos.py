"""The Distill-MOS encoder: the conversion reproduces the published model, and MTQ-Net reads it as its SSL branch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from modeling_mtqnet.model.configuration_distillmos import DistillMosEncoderConfig
from modeling_mtqnet.model.configuration_mtqnet import MTQNetConfig
from modeling_mtqnet.model.modeling_distillmos import DistillMosEncoder, DistillMosForQualityScore
from modeling_mtqnet.model.modeling_mtqnet import MTQNetForSpeechQualityAssessment
from modeling_mtqnet.pretrained import encoder_path, resolve_ssl_model

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SPEECH = FIXTURES / "real_speech_en_allison.wav"


def distillmos_clips() -> dict[str, np.ndarray]:
    """The parity clips (also read by fixtures/make_distillmos_reference.py): real speech, deterministic noise
    (numpy's PCG64), shorter than, exactly and longer than the published 7.68 s window, and a quiet copy."""
    speech, rate = sf.read(SPEECH, dtype="float32")
    assert rate == 16000
    noise = np.random.default_rng(0).standard_normal(16000 * 10).astype(np.float32)
    window = np.resize(speech, 122880)
    long = np.resize(speech, 160000)
    long[80000:] += 0.05 * noise[80000:]
    return {
        "speech_3.6s": speech,
        "speech_1s": speech[:16000].copy(),
        "speech_noisy": speech + 0.1 * noise[: len(speech)],
        "speech_quiet": 0.01 * speech,
        "window_7.68s": window,
        "long_10s_noisy_second_half": long,
    }


def padded_batch(short: torch.Tensor, long: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero-padded batch of two clips and its attention mask."""
    batch = torch.zeros(2, len(long))
    batch[0, : len(short)], batch[1] = short, long
    mask = torch.zeros_like(batch, dtype=torch.long)
    mask[0, : len(short)], mask[1] = 1, 1
    return batch, mask


@pytest.fixture(scope="module")
def published() -> DistillMosForQualityScore:
    return DistillMosForQualityScore.from_pretrained(encoder_path()).eval()


def test_conversion_reproduces_the_published_scores(published):
    """The converted weights and this package's code give Distill-MOS's own MOS (made by the original package,
    fixtures/make_distillmos_reference.py) within 1e-4 on clips below, at and above its window."""
    reference = json.loads((FIXTURES / "distillmos_reference.json").read_text())["mos"]
    clips = distillmos_clips()
    assert set(reference) == set(clips)
    with torch.no_grad():
        ours = {name: float(published(torch.as_tensor(clip)[None])) for name, clip in clips.items()}
    for name in clips:
        assert ours[name] == pytest.approx(reference[name], abs=1e-4), name
    assert max(reference.values()) - min(reference.values()) > 0.3  # the clips are told apart: a real check


def test_encoder_frames_do_not_depend_on_the_batch(published):
    """A clip's frames alone equal its frames in a zero-padded batch beside a longer clip (two windows)."""
    encoder = published.distillmos
    clips = distillmos_clips()
    short, long = torch.as_tensor(clips["speech_1s"]), torch.as_tensor(clips["long_10s_noisy_second_half"])
    batch, mask = padded_batch(short, long)
    with torch.no_grad():
        together = encoder(batch, attention_mask=mask).last_hidden_state
        alone_short = encoder(short[None]).last_hidden_state
        alone_long = encoder(long[None]).last_hidden_state
    frames_short = int(encoder._get_feat_extract_output_lengths(torch.tensor(len(short))))
    assert alone_short.shape[1] == frames_short == 50 and together.shape[1] == alone_long.shape[1] == 500
    torch.testing.assert_close(together[0, :frames_short], alone_short[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(together[1], alone_long[0], atol=1e-4, rtol=0)


def test_encoder_hidden_states_and_geometry():
    config = DistillMosEncoderConfig()
    assert (config.frame_stride, config.frame_centre_offset, config.frames_per_window) == (320, 80, 384)
    assert config.frequency_bins_out == 4
    torch.manual_seed(0)
    encoder = DistillMosEncoder(config).eval()
    with torch.no_grad():
        out = encoder(torch.randn(1, 16000), output_hidden_states=True)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert out.last_hidden_state.shape == (1, 50, 200)
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)


def test_fine_tuning_keeps_batch_norm_statistics():
    """Training mode leaves the batch norms on their stored statistics (batch statistics would mix clips)."""
    encoder = DistillMosEncoder(DistillMosEncoderConfig()).train()
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 3 and not any(m.training for m in norms)
    assert encoder.layers[0].training


def test_mtqnet_reads_the_pretrained_encoder(published):
    """`--ssl_model distillmos` resolves to the shipped folder; the loaded encoder in MTQ-Net is the published one,
    frozen, and MTQ-Net scores a clip alone and in a padded batch alike."""
    folder = resolve_ssl_model("distillmos")
    assert Path(folder) == encoder_path()
    config = MTQNetConfig.from_preset("small-distillmos")
    assert config.freeze_ssl and config.one_pass_limit_s == config.max_duration_s
    torch.manual_seed(0)
    model = MTQNetForSpeechQualityAssessment(config)
    model.load_ssl_weights(folder)
    model.eval()
    for name, weight in published.distillmos.state_dict().items():
        torch.testing.assert_close(model.mtqnet.ssl_encoder.state_dict()[name], weight)
    assert not any(p.requires_grad for p in model.mtqnet.ssl_encoder.parameters())
    clips = distillmos_clips()
    short, long = torch.as_tensor(clips["speech_noisy"]), torch.as_tensor(clips["window_7.68s"])
    batch, mask = padded_batch(short, long)
    with torch.no_grad():
        together = model(batch, attention_mask=mask).logits
        alone = model(short[None]).logits
    torch.testing.assert_close(together[0], alone[0], atol=1e-4, rtol=0)


def test_a_saved_mtqnet_with_the_encoder_loads_by_its_own_code(tmp_path):
    """A saved small-distillmos model carries the encoder's code files and scores the same in a fresh process where
    the package cannot be imported (`trust_remote_code=True`)."""
    from tests.helpers import run_without_package

    torch.manual_seed(0)
    model = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset("small-distillmos")).eval()
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    assert {"configuration_distillmos.py", "modeling_distillmos.py"} <= {p.name for p in folder.glob("*.py")}
    clip = distillmos_clips()["speech_noisy"]
    np.save(tmp_path / "clip.npy", clip)
    with torch.no_grad():
        expected = model(torch.as_tensor(clip)[None]).logits[0].tolist()
    code = f"""
    import json
    import numpy as np
    import torch
    from transformers import AutoModel
    model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
    assert type(model.mtqnet.ssl_encoder).__module__.startswith("transformers_modules")
    with torch.no_grad():
        print(json.dumps(model(torch.as_tensor(np.load({str(tmp_path / 'clip.npy')!r}))[None]).logits[0].tolist()))
    """
    logits = json.loads(run_without_package(code, cwd=tmp_path).strip().splitlines()[-1])
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_frozen_encoder_features_are_kept_across_runs_on_disk(tmp_path, monkeypatch):
    """A second caching run of the same clips with the same encoder reads the stored features (the encoder is not
    run) and gets the same numbers; another encoder gets a folder of its own."""
    from datasets import Dataset

    from modeling_mtqnet.training.features_cache import cache_ssl_features, encoder_fingerprint

    torch.manual_seed(0)
    model = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset("small-distillmos")).eval()
    clips = distillmos_clips()
    dataset = Dataset.from_dict({"input_values": [clips["speech_1s"], clips["speech_noisy"]]})
    first = cache_ssl_features(dataset, model, cache_dir=tmp_path)
    folder = tmp_path / encoder_fingerprint(model)
    assert len(list(folder.glob("*.npy"))) == 2

    def must_not_run(*args, **kwargs):
        raise AssertionError("the encoder ran although its features were on disk")

    monkeypatch.setattr(model.mtqnet, "ssl_hidden_states", must_not_run)
    second = cache_ssl_features(dataset, model, cache_dir=tmp_path)
    for a, b in zip(first["ssl_hidden_states"], second["ssl_hidden_states"]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset("small-distillmos"))
    assert encoder_fingerprint(other) != encoder_fingerprint(model)
