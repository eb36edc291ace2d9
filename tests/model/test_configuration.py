"""MTQNetConfig: presets, derived fields, validation, serialisation, and the reference trunk's size."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig

from modeling_mtqnet import MTQNetConfig, MTQNetForSpeechQualityAssessment, MTQNetModel
from modeling_mtqnet.model.configuration_mtqnet import ssl_frame_geometry


def test_defaults_follow_the_paper():
    config = MTQNetConfig()
    assert config.model_type == "mtqnet"
    assert config.target_names == ["s_mos", "n_mos", "g_mos"]
    assert config.auxiliary_target_names == ["pesq", "stoi", "sdi"]
    assert config.id2label == {0: "s_mos", 1: "n_mos", 2: "g_mos"}
    assert config.num_labels == 3
    assert config.problem_type == "regression"
    assert config.auxiliary_target_activations == ["linear", "sigmoid", "linear"]
    assert config.auxiliary_target_ranges[1] == [0.0, 1.0]
    assert (config.loss_type, config.huber_delta, config.frame_loss_weight) == ("huber", 1.0, 1.0)
    assert config.pseudo_label_loss_weight == 1.0
    assert config.sinc_trainable and config.fusion_mode == "time"
    assert config.cnn_output_frequencies == 4  # 257 -> 86 -> 29 -> 10 -> 4


def test_any_target_set_works():
    config = MTQNetConfig(target_names=["sig", "bak", "ovrl"], auxiliary_target_names=[])
    assert config.id2label == {0: "sig", 1: "bak", 2: "ovrl"}
    assert config.target_activations == ["linear"] * 3 and config.target_ranges == [None] * 3
    model = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset("tiny", target_names=["mos"],
                                                                      auxiliary_target_names=[]))
    assert list(model.heads) == ["mos"] and len(model.auxiliary_heads) == 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"fusion_mode": "sideways"}, "fusion_mode"),
        ({"loss_type": "hinge"}, "loss_type"),
        ({"ssl_layer": "first"}, "ssl_layer"),
        ({"target_names": []}, "at least one primary target"),
        ({"target_names": ["pesq"]}, "unique"),
        ({"target_names": ["x"], "target_activations": ["sigmoid"]}, "needs a \\[low, high\\] range"),
        ({"target_names": ["x"], "target_activations": ["softmax"]}, "Activation"),
        ({"target_names": ["x"], "target_ranges": [[5, 1]]}, "low < high"),
        ({"target_names": ["x", "y"], "target_activations": ["linear"]}, "one entry per name"),
        ({"sinc_kernel_size": 250}, "odd"),
        ({"huber_delta": 0.0}, "positive"),
    ],
)
def test_invalid_settings_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        MTQNetConfig(**overrides)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="mosa-net"):
        MTQNetConfig.from_preset("huge")


def test_presets_and_overrides():
    tiny = MTQNetConfig.from_preset("tiny")
    assert tiny.ssl_config.model_type == "wavlm" and tiny.ssl_config.num_hidden_layers == 2
    small = MTQNetConfig.from_preset("small")
    assert small.ssl_config is None
    mosa = MTQNetConfig.from_preset("mosa-net", loss_type="mse")
    assert mosa.loss_type == "mse"
    assert (mosa.ssl_config.hidden_size, mosa.ssl_config.num_hidden_layers) == (768, 12)
    assert mosa.cnn_channels == [16, 32, 64, 128] and mosa.lstm_hidden_size == 128 and mosa.dense_size == 128


def test_round_trip_through_json(tmp_path):
    config = MTQNetConfig.from_preset("tiny", target_names=["sig", "bak"], huber_delta=0.75, ssl_layer="weighted")
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForAudioClassification"].endswith("MTQNetForSpeechQualityAssessment")
    assert saved["auto_map"]["AutoFeatureExtractor"].endswith("MTQNetFeatureExtractor")
    assert saved["ssl_config"]["model_type"] == "wavlm"
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, MTQNetConfig)
    for field in ("target_names", "huber_delta", "ssl_layer", "cnn_channels", "fusion_mode", "id2label"):
        assert getattr(loaded, field) == getattr(config, field)
    assert loaded.ssl_config.to_dict() == config.ssl_config.to_dict()


def test_ssl_frame_geometry_of_wavlm_base():
    assert ssl_frame_geometry(MTQNetConfig.from_preset("mosa-net").ssl_config) == (320, 400)


def test_min_input_samples_covers_every_branch():
    assert MTQNetConfig.from_preset("small").min_input_samples == 257  # the STFT's reflect padding
    assert MTQNetConfig.from_preset("mosa-net").min_input_samples == 400  # one WavLM frame


def test_mosa_net_trunk_size():
    """The reference trunk without its SSL encoder: the design note says about 1.75 M parameters."""
    trunk = MTQNetModel(MTQNetConfig.from_preset("mosa-net"))
    total = sum(p.numel() for p in trunk.parameters())
    ssl = sum(p.numel() for p in trunk.ssl_encoder.parameters())
    # 489,312 CNN + 657,408 BLSTM + 32,896 dense + 393,728 SSL projection + 514 sinc = 1,573,858 in the trunk;
    # the six heads add 99,084: 1,672,942 for the whole model without the encoder.
    assert total - ssl == 1_573_858
    model = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset("mosa-net"))
    without_ssl = sum(p.numel() for p in model.parameters()) - ssl
    assert without_ssl == 1_672_942
    assert 1.6e6 < without_ssl < 1.9e6


def test_one_pass_limit_is_bounded_by_the_ssl_encoders_attention():
    from modeling_mtqnet.model.configuration_mtqnet import (
        ONE_PASS_ATTENTION_BUDGET_BYTES,
        SSL_ATTENTION_BYTES_PER_SCORE,
    )

    assert MTQNetConfig.from_preset("small").one_pass_limit_s == 600.0  # no SSL: memory linear in the clip
    for preset in ("mosa-net", "tiny"):
        config = MTQNetConfig.from_preset(preset)
        limit = config.one_pass_limit_s
        stride, _ = ssl_frame_geometry(config.ssl_config)
        frames = limit * config.sampling_rate / stride
        spent = SSL_ATTENTION_BYTES_PER_SCORE * config.ssl_config.num_attention_heads * frames**2
        assert 10 <= limit < 600 and spent <= ONE_PASS_ATTENTION_BUDGET_BYTES
    assert MTQNetConfig.from_preset("mosa-net").one_pass_limit_s == 52
    assert MTQNetConfig.from_preset("mosa-net", max_duration_s=20).one_pass_limit_s == 20


def test_forward_refuses_a_clip_over_the_one_pass_limit():
    import torch

    from modeling_mtqnet import MTQNetFeatureExtractor

    model = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset("tiny", max_duration_s=1.0)).eval()
    assert MTQNetFeatureExtractor.from_model_config(model.config).max_duration_s == 1.0
    with torch.no_grad():
        model(torch.randn(1, 16000) * 0.1)  # at the limit: fine
        with pytest.raises(ValueError, match=r"longer than this model scores in one pass in bounded memory \(1 s"):
            model(torch.randn(1, 16001) * 0.1)
