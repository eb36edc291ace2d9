"""The model: outputs, batch invariance, the objective, SSL options, mixed precision, save/load, head dropping."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForAudioClassification

from modeling_mtqnet import (
    MTQNetFeatureExtractor,
    MTQNetForSpeechQualityAssessment,
    speech_quality_objective,
)
from modeling_mtqnet.model.modeling_mtqnet import pointwise_loss
from tests.helpers import build_model, noisy_tone, tiny_ssl_config

LENGTHS = (16000, 9000, 23456)


def featurise(model, clips):
    return MTQNetFeatureExtractor.from_model_config(model.config)(clips, sampling_rate=16000, return_tensors="pt")


def clips_of(lengths=LENGTHS):
    return [noisy_tone(n / 16000, snr_db=5 + 5 * i, seed=i) for i, n in enumerate(lengths)]


def test_output_shapes(tiny_model):
    batch = featurise(tiny_model, clips_of())
    with torch.no_grad():
        out = tiny_model(**batch)
    frames = 1 + max(LENGTHS) // 256  # aligned fusion: one frame per STFT hop
    assert out.logits.shape == (3, 3)
    assert out.frame_scores.shape == (3, frames, 3)
    assert out.auxiliary_logits.shape == (3, 3) and out.auxiliary_frame_scores.shape == (3, frames, 3)
    assert out.frame_mask.sum(1).tolist() == [1 + n // 256 for n in LENGTHS]
    assert torch.allclose(out.frame_times[0, :3], torch.tensor([0.0, 0.016, 0.032]))
    assert out.loss is None
    stoi = out.auxiliary_logits[:, 1]
    assert ((stoi > 0) & (stoi < 1)).all()  # sigmoid scaled to STOI's range
    # The utterance score is the mean of the frame scores over valid frames.
    mask = out.frame_mask[..., None].float()
    assert torch.allclose(out.logits, (out.frame_scores * mask).sum(1) / mask.sum(1), atol=1e-5)


@pytest.mark.parametrize("fusion_mode", ["aligned", "time"])
@pytest.mark.parametrize("ssl_norm", ["group", "layer", None])
def test_scores_do_not_depend_on_the_batch(fusion_mode, ssl_norm):
    """Every output of a clip alone equals its output inside a padded batch of clips of other lengths."""
    ssl_config = tiny_ssl_config(ssl_norm) if ssl_norm else None
    model = build_model(fusion_mode=fusion_mode, ssl_config=ssl_config)
    clips = clips_of()
    with torch.no_grad():
        batched = model(**featurise(model, clips))
        for index, clip in enumerate(clips):
            alone = model(**featurise(model, [clip]))
            frames = int(alone.frame_mask.sum())
            assert int(batched.frame_mask[index].sum()) == frames
            for name in ("logits", "auxiliary_logits"):
                diff = (getattr(alone, name)[0] - getattr(batched, name)[index]).abs().max()
                assert diff <= 1e-4, (name, float(diff))
            for name in ("frame_scores", "auxiliary_frame_scores", "frame_times"):
                diff = (getattr(alone, name)[0, :frames] - getattr(batched, name)[index, :frames]).abs().max()
                assert diff <= 1e-4, (name, float(diff))
            assert torch.equal(alone.frame_sections[0, :frames], batched.frame_sections[index, :frames])


def test_time_fusion_covers_three_sections():
    model = build_model(fusion_mode="time")
    with torch.no_grad():
        out = model(**featurise(model, [noisy_tone(1.0)]))
    stft_frames = 1 + 16000 // 256
    ssl_frames = int(model.mtqnet.ssl_encoder._get_feat_extract_output_lengths(torch.tensor(16000)))
    sections = out.frame_sections[0][out.frame_mask[0]].tolist()
    assert sections == [0] * stft_frames + [1] * stft_frames + [2] * ssl_frames
    assert out.frame_scores.shape[1] == 2 * stft_frames + ssl_frames


def test_padding_values_are_ignored(tiny_model):
    """Whatever sits in the padded region of input_values (not just zeros), the scores stay the same."""
    batch = featurise(tiny_model, clips_of())
    garbage = batch["input_values"].clone()
    garbage[batch["attention_mask"] == 0] = 0.7
    with torch.no_grad():
        clean = tiny_model(**batch).logits
        dirty = tiny_model(input_values=garbage, attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(clean, dirty, atol=1e-5)


def test_too_short_input_is_refused(tiny_model):
    with pytest.raises(ValueError, match="at least"):
        tiny_model(input_values=torch.randn(1, 100))
    with pytest.raises(ValueError, match="batch, samples"):
        tiny_model(input_values=torch.randn(16000))


# -- objective -----------------------------------------------------------------------------------------------------


def huber(error: float, delta: float) -> float:
    return error**2 / 2 if abs(error) <= delta else delta * (abs(error) - delta / 2)


@pytest.mark.parametrize("loss_type", ["huber", "mse", "mae"])
def test_pointwise_losses_match_their_definitions(loss_type):
    errors = torch.tensor([-2.5, -0.4, 0.0, 0.3, 1.7])
    expected = {
        "huber": [huber(float(e), 0.75) for e in errors],
        "mse": [float(e) ** 2 for e in errors],
        "mae": [abs(float(e)) for e in errors],
    }[loss_type]
    got = pointwise_loss(errors, torch.zeros(5), loss_type, 0.75)
    assert torch.allclose(got, torch.tensor(expected))


def test_objective_matches_the_paper_equations(tiny_model):
    """O = sum_k [mean_u H(S_u - Ŝ_u) + alpha * mean_u (1/F_u) sum_f H(S_u - ŝ_f)], recomputed with plain loops."""
    config = tiny_model.config
    batch = featurise(tiny_model, clips_of())
    labels = torch.tensor([[3.0, 4.5, 1.2], [1.5, float("nan"), 4.9], [2.0, 2.0, float("nan")]])
    pseudo = torch.tensor([[3.5, 0.9, 0.1], [1.0, 0.5, 2.0], [float("nan"), 0.7, 1.0]])
    with torch.no_grad():
        out = tiny_model(**batch, labels=labels, pseudo_labels=pseudo)
    alpha, delta, weight = config.frame_loss_weight, config.huber_delta, config.pseudo_label_loss_weight

    def term(utterance, frames, targets):
        total = 0.0
        for k in range(targets.shape[1]):
            rows = [u for u in range(targets.shape[0]) if not math.isnan(targets[u, k])]
            utt = sum(huber(float(targets[u, k] - utterance[u, k]), delta) for u in rows) / len(rows)
            fr = 0.0
            for u in rows:
                valid = frames[u, out.frame_mask[u], k]
                fr += sum(huber(float(targets[u, k] - s), delta) for s in valid) / len(valid)
            total += utt + alpha * fr / len(rows)
        return total

    expected = term(out.logits, out.frame_scores, labels) + weight * term(
        out.auxiliary_logits, out.auxiliary_frame_scores, pseudo
    )
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    loss, components = speech_quality_objective(out, labels, pseudo, config)
    assert set(components) >= {"loss_superv", "loss_semi", "loss_s_mos", "loss_pesq", "loss_sdi"}
    assert loss.item() == pytest.approx(
        components["loss_superv"].item() + weight * components["loss_semi"].item(), rel=1e-6
    )


def test_missing_label_drops_only_its_term(tiny_model):
    batch = featurise(tiny_model, clips_of())
    labels = torch.tensor([[3.0, 4.0, 2.0], [1.5, 2.5, 4.0], [2.0, 3.0, 3.5]])
    with torch.no_grad():
        out = tiny_model(**batch)
    _, full = speech_quality_objective(out, labels, None, tiny_model.config)
    labels_missing = labels.clone()
    labels_missing[1, 0] = float("nan")
    _, partial = speech_quality_objective(out, labels_missing, None, tiny_model.config)
    assert partial["loss_n_mos"] == full["loss_n_mos"] and partial["loss_g_mos"] == full["loss_g_mos"]
    assert partial["loss_s_mos"] != full["loss_s_mos"]
    # The partial S-MOS term is the mean over the two labelled clips only.
    subset = {k: v[[0, 2]] for k, v in batch.items()}
    with torch.no_grad():
        out_subset = tiny_model(**subset)
    _, on_subset = speech_quality_objective(out_subset, labels[[0, 2]], None, tiny_model.config)
    assert partial["loss_s_mos"].item() == pytest.approx(on_subset["loss_s_mos"].item(), rel=1e-4)


def test_counts_override_normalises_like_a_larger_batch(tiny_model):
    batch = featurise(tiny_model, clips_of())
    labels = torch.tensor([[3.0, 4.0, 2.0], [1.5, 2.5, 4.0], [2.0, 3.0, 3.5]])
    with torch.no_grad():
        out = tiny_model(**batch)
    loss, _ = speech_quality_objective(out, labels, None, tiny_model.config)
    doubled, _ = speech_quality_objective(out, labels, None, tiny_model.config, counts=torch.full((6,), 6))
    assert doubled.item() == pytest.approx(loss.item() / 2, rel=1e-6)


def test_bad_labels_are_refused(tiny_model):
    batch = featurise(tiny_model, clips_of((16000,)))
    with pytest.raises(ValueError, match="outside its range"):
        tiny_model(**batch, labels=torch.tensor([[3.0, 7.0, 2.0]]))
    with pytest.raises(ValueError, match="Inf"):
        tiny_model(**batch, labels=torch.tensor([[3.0, float("inf"), 2.0]]))
    with pytest.raises(ValueError, match="shape"):
        tiny_model(**batch, labels=torch.tensor([[3.0, 2.0]]))
    with pytest.raises(ValueError, match="outside its range"):
        tiny_model(**batch, pseudo_labels=torch.tensor([[3.0, 1.5, 0.2]]))  # STOI > 1
    no_aux = build_model(auxiliary_target_names=[])
    with pytest.raises(ValueError, match="no auxiliary"):
        no_aux(**batch, pseudo_labels=torch.tensor([[3.0, 0.5, 0.2]]))


def test_all_missing_labels_give_zero_loss_not_nan(tiny_model):
    batch = featurise(tiny_model, clips_of((16000,)))
    out = tiny_model(**batch, labels=torch.full((1, 3), float("nan")))
    assert out.loss.item() == 0.0


# -- training behaviour ---------------------------------------------------------------------------------------------


def test_every_trainable_part_gets_gradients_including_sinc():
    model = build_model(ssl_config=tiny_ssl_config("layer"), freeze_ssl_feature_encoder=False, dropout=0.0).train()
    batch = featurise(model, clips_of((16000, 12000)))
    model(**batch, labels=torch.tensor([[3.0, 4.0, 2.0], [1.5, 2.5, 4.0]]),
          pseudo_labels=torch.tensor([[3.0, 0.8, 0.5], [2.0, 0.6, 1.0]])).loss.backward()
    sinc = model.mtqnet.sinc
    assert sinc.low_hz_.grad is not None and sinc.low_hz_.grad.abs().sum() > 0
    assert sinc.band_hz_.grad.abs().sum() > 0
    for name in ("mtqnet.cnn.convs.0.weight", "mtqnet.blstm.weight_ih_l0", "mtqnet.ssl_projection.weight",
                 "heads.s_mos.attention_weight.weight", "auxiliary_heads.stoi.score.weight",
                 "mtqnet.ssl_encoder.encoder.layers.0.attention.k_proj.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_sinc_can_be_frozen():
    model = build_model(sinc_trainable=False)
    assert not model.mtqnet.sinc.low_hz_.requires_grad


def test_sinc_filters_start_mel_spaced_and_band_limited():
    sinc = build_model().mtqnet.sinc
    low = (sinc.min_low_hz + sinc.low_hz_.abs()).squeeze()
    assert low[0].item() == pytest.approx(50.0) and torch.all(torch.diff(low) > 0)
    assert torch.all(torch.diff(torch.diff(low)) > -1e-3)  # mel spacing: bands widen with frequency
    response = torch.fft.rfft(sinc.filters().detach()[100, 0], n=4096).abs()
    peak_hz = response.argmax().item() * 16000 / 4096
    band_low = low[100].item()
    band_high = band_low + sinc.min_band_hz + sinc.band_hz_[100].abs().item()
    assert band_low - 50 <= peak_hz <= band_high + 50


def test_frozen_ssl_gets_no_gradients_and_stays_in_eval_mode():
    model = build_model(freeze_ssl=True).train()
    assert not model.mtqnet.ssl_encoder.training and model.mtqnet.cnn.training
    assert not any(p.requires_grad for p in model.mtqnet.ssl_encoder.parameters())
    batch = featurise(model, clips_of((16000,)))
    model(**batch, labels=torch.tensor([[3.0, 4.0, 2.0]])).loss.backward()
    assert all(p.grad is None for p in model.mtqnet.ssl_encoder.parameters())
    assert model.mtqnet.ssl_projection.weight.grad is not None


def test_fine_tuned_ssl_keeps_its_conv_front_end_fixed_by_default():
    model = build_model()
    encoder = model.mtqnet.ssl_encoder
    assert not any(p.requires_grad for p in encoder.feature_extractor.parameters())
    assert all(p.requires_grad for p in encoder.encoder.parameters())


@pytest.mark.parametrize("ssl_layer", ["weighted", 1, 0])
def test_ssl_layer_choice(ssl_layer):
    model = build_model(ssl_layer=ssl_layer)
    batch = featurise(model, clips_of((16000,)))
    out = model(**batch, labels=torch.tensor([[3.0, 4.0, 2.0]]))
    assert torch.isfinite(out.logits).all()
    if ssl_layer == "weighted":
        out.loss.backward()
        assert model.mtqnet.ssl_layer_weights.grad.abs().sum() > 0
    # Different layers feed different features, so the scores differ from the last-layer model's.
    reference = build_model()
    with torch.no_grad():
        assert not torch.allclose(reference(**batch).logits, model(**batch).logits)


@pytest.mark.parametrize("model_type", ["hubert", "wav2vec2"])
def test_other_ssl_encoders(model_type):
    ssl = {**tiny_ssl_config("group"), "model_type": model_type}
    for key in ("num_buckets", "max_bucket_distance"):
        ssl.pop(key)
    model = build_model(ssl_config=ssl)
    assert model.mtqnet.ssl_encoder.config.model_type == model_type
    clips = clips_of((16000, 9000))
    with torch.no_grad():
        batched = model(**featurise(model, clips)).logits
        alone = model(**featurise(model, clips[1:])).logits
    assert (batched[1] - alone[0]).abs().max() <= 1e-4


def test_gradient_checkpointing_gives_the_same_gradients():
    def gradients(checkpointing: bool):
        model = build_model(seed=3, dropout=0.0).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert model.mtqnet.ssl_encoder.encoder.gradient_checkpointing
        batch = featurise(model, clips_of((16000,)))
        model(**batch, labels=torch.tensor([[3.0, 4.0, 2.0]])).loss.backward()
        return model.mtqnet.ssl_encoder.encoder.layers[0].attention.q_proj.weight.grad

    assert torch.allclose(gradients(False), gradients(True), atol=1e-6)


def test_bf16_autocast_on_cpu(tiny_model):
    batch = featurise(tiny_model, clips_of())
    labels = torch.tensor([[3.0, 4.0, 2.0], [1.5, 2.5, 4.0], [2.0, 3.0, 3.5]])
    with torch.no_grad():
        full = tiny_model(**batch, labels=labels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = tiny_model(**batch, labels=labels)
    assert torch.isfinite(half.logits).all() and torch.isfinite(half.loss)
    assert (half.logits.float() - full.logits).abs().max() < 0.1  # bf16 keeps ~3 significant digits
    model = build_model(dropout=0.0).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch, labels=labels).loss
    loss.backward()
    assert model.mtqnet.sinc.low_hz_.grad is not None and torch.isfinite(model.mtqnet.sinc.low_hz_.grad).all()


def test_spectral_branch_stays_float32_under_autocast(tiny_model):
    waveforms = torch.randn(2, 8000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spectrum = tiny_model.mtqnet.spectral(waveforms, torch.tensor([8000, 6000]))
    assert spectrum.dtype == torch.float32


def test_spectral_branch_is_the_linear_stft_magnitude(tiny_model):
    waveform = torch.randn(1, 5000)
    ours = tiny_model.mtqnet.spectral(waveform, torch.tensor([5000]))[0]
    reference = torch.stft(waveform[0], 512, 256, 512, torch.hamming_window(512), center=True, pad_mode="reflect",
                           return_complex=True).abs().T
    assert ours.shape == reference.shape == (1 + 5000 // 256, 257)
    assert torch.allclose(ours, reference, atol=1e-4)


# -- saving, loading, dropping heads ---------------------------------------------------------------------------------


def test_save_and_load_give_identical_scores(tiny_model, saved_model_dir):
    batch = featurise(tiny_model, clips_of())
    for auto_class in (AutoModel, AutoModelForAudioClassification, MTQNetForSpeechQualityAssessment):
        loaded = auto_class.from_pretrained(saved_model_dir)
        assert isinstance(loaded, MTQNetForSpeechQualityAssessment) and not loaded.training
        with torch.no_grad():
            assert torch.equal(loaded(**batch).logits, tiny_model(**batch).logits)
    names = {p.name for p in saved_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "modeling_mtqnet.py",
            "configuration_mtqnet.py", "feature_extraction_mtqnet.py", "pipeline_mtqnet.py"} <= names


def test_windows_and_sinc_axis_are_float32_and_not_saved(saved_model_dir):
    """The STFT window and the sinc time axis are made on each call in float32 (never rounded with the weights)."""
    loaded = MTQNetForSpeechQualityAssessment.from_pretrained(saved_model_dir, dtype=torch.bfloat16)
    saved = load_file(saved_model_dir / "model.safetensors")
    assert not any(name.endswith(("time_axis", "window")) for name in saved)
    time_axis, window = loaded.mtqnet.sinc.time_axis_and_window()
    assert time_axis.dtype == window.dtype == torch.float32
    assert torch.equal(time_axis, 2 * math.pi * torch.arange(-125, 0).float().view(1, -1) / 16000)
    assert torch.equal(loaded.mtqnet.spectral.window(), torch.hamming_window(512))
    assert loaded.mtqnet.sinc.filters().dtype == torch.float32


def test_drop_auxiliary_heads(tmp_path, tiny_model, saved_model_dir):
    model = MTQNetForSpeechQualityAssessment.from_pretrained(saved_model_dir)
    batch = featurise(model, clips_of())
    with torch.no_grad():
        before = model(**batch).logits
    model.drop_auxiliary_heads()
    assert len(model.auxiliary_heads) == 0 and model.config.auxiliary_target_names == []
    assert model.config.trained_auxiliary_target_names == ["pesq", "stoi", "sdi"]
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").stat().st_size < (saved_model_dir / "model.safetensors").stat().st_size
    assert not any(key.startswith("auxiliary_heads") for key in load_file(tmp_path / "model.safetensors"))
    reloaded = AutoModel.from_pretrained(tmp_path)
    with torch.no_grad():
        out = reloaded(**batch)
    assert out.auxiliary_logits is None and torch.equal(out.logits, before)
    assert tiny_model.config.auxiliary_target_names == ["pesq", "stoi", "sdi"]  # the session model is untouched


def test_load_ssl_weights_from_a_local_folder(tmp_path):
    from transformers import AutoConfig
    from transformers import AutoModel as HFAutoModel

    torch.manual_seed(7)
    pretrained = HFAutoModel.from_config(AutoConfig.for_model(**tiny_ssl_config()))
    pretrained.save_pretrained(tmp_path / "ssl")
    model = build_model()
    model.load_ssl_weights(tmp_path / "ssl")
    for name, value in pretrained.state_dict().items():
        assert torch.equal(model.mtqnet.ssl_encoder.state_dict()[name], value), name
    assert not any(p.requires_grad for p in model.mtqnet.ssl_encoder.feature_extractor.parameters())
    mismatched = build_model(ssl_config={**tiny_ssl_config(), "hidden_size": 48})
    with pytest.raises(Exception, match="size mismatch|does not match"):
        mismatched.load_ssl_weights(tmp_path / "ssl")
    with pytest.raises(ValueError, match="no SSL encoder"):
        build_model(ssl_config=None).load_ssl_weights(tmp_path / "ssl")


def test_fusion_modes_build_different_networks():
    """The fusion switch is honoured: two-channel image and feature concatenation vs. concatenation along time."""
    aligned, timed = build_model(fusion_mode="aligned"), build_model(fusion_mode="time")
    assert aligned.mtqnet.cnn.convs[0].in_channels == 2 and timed.mtqnet.cnn.convs[0].in_channels == 1
    assert aligned.mtqnet.blstm.input_size == 16 + 16 and timed.mtqnet.blstm.input_size == 16


def test_pseudo_labels_alone_still_train_the_shared_trunk():
    """An utterance with pseudo labels but no primary label (the MPL setting) still sends gradients to the trunk."""
    model = build_model(dropout=0.0).train()
    batch = featurise(model, clips_of((16000,)))
    out = model(**batch, labels=torch.full((1, 3), float("nan")), pseudo_labels=torch.tensor([[2.5, 0.7, 1.0]]))
    out.loss.backward()
    assert out.loss.item() > 0
    assert model.mtqnet.cnn.convs[0].weight.grad.abs().sum() > 0
    assert model.heads["s_mos"].score.weight.grad.abs().sum() == 0  # no primary label, no primary-head gradient
