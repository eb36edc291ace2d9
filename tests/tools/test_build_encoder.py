"""`mtqnet build-encoder`: the published checkpoint is read as data from a hash-checked wheel and renamed in full."""

from __future__ import annotations

import dataclasses
import io
import zipfile

import pytest
import torch

from modeling_mtqnet.model.configuration_distillmos import DistillMosEncoderConfig
from modeling_mtqnet.model.modeling_distillmos import DistillMosForQualityScore, sinusoidal_positions
from modeling_mtqnet.tools import build_encoder
from modeling_mtqnet.tools.build_encoder import POSITIONAL_TABLE, convert_state_dict, read_checkpoint, renamed


def published_keys(model: DistillMosForQualityScore) -> dict[str, torch.Tensor]:
    """A state dict under the published names, made by inverting the conversion on our own model's weights."""
    inverse = {}
    for key in [f"cnn.cnn.{2 * i}.{p}" for i in range(6) for p in ("weight", "bias")]:
        inverse[key] = renamed(key)
    prefix = "transformer_pool_attn."
    names = ["norm_input", "transformer.norm", "transformer.linear_proj", "norm_trans", "pool.linear1", "pool.linear2",
             "pool.linear3"]
    ours = model.state_dict()
    for name in names:
        for suffix in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            key = f"{prefix}{name}.{suffix}"
            try:
                target = renamed(key)
            except ValueError:
                continue
            if target in ours:
                inverse[key] = target
    for layer in range(7):
        base = f"{prefix}transformer.transformer_encoder.layers.{layer}."
        for key in ("self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                    "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
                    "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"):
            inverse[base + key] = renamed(base + key)
    published = {key: ours[target] for key, target in inverse.items()}
    published[POSITIONAL_TABLE] = sinusoidal_positions(384, 200)[None]
    return published


def test_the_conversion_renames_every_weight_once():
    config = DistillMosEncoderConfig()
    model = DistillMosForQualityScore(config)
    published = published_keys(model)
    converted = convert_state_dict(published, config)
    assert set(converted) == set(model.state_dict())  # every weight of ours, none twice, the table dropped
    with pytest.raises(ValueError, match="does not know"):
        convert_state_dict({**published, "transformer_pool_attn.extra.weight": torch.zeros(1)}, config)
    with pytest.raises(ValueError, match="positional table differs"):
        convert_state_dict({**published, POSITIONAL_TABLE: torch.zeros(1, 384, 200)}, config)


def fake_wheel(path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save({"model": state, "step": 1}, buffer)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(build_encoder.DISTILLMOS_WHEEL.checkpoint, buffer.getvalue())
        archive.writestr(build_encoder.DISTILLMOS_WHEEL.licence_file, "MIT License\n")


def test_a_wheel_with_another_hash_is_refused(tmp_path):
    wheel = tmp_path / build_encoder.DISTILLMOS_WHEEL.filename
    fake_wheel(wheel, {"a": torch.zeros(1)})
    with pytest.raises(ValueError, match="not the pinned"):
        read_checkpoint(wheel, build_encoder.DISTILLMOS_WHEEL)


def test_build_from_a_wheel_writes_a_loadable_folder_and_never_overwrites_foreign_files(tmp_path, monkeypatch):
    config = DistillMosEncoderConfig()
    torch.manual_seed(0)
    model = DistillMosForQualityScore(config).eval()
    wheel = tmp_path / build_encoder.DISTILLMOS_WHEEL.filename
    fake_wheel(wheel, published_keys(model))
    pin = dataclasses.replace(build_encoder.DISTILLMOS_WHEEL, sha256=build_encoder.sha256_of(wheel))
    monkeypatch.setattr(build_encoder, "DISTILLMOS_WHEEL", pin)
    folder = build_encoder.main(["--wheel", str(wheel), "--output_dir", str(tmp_path / "encoder")])
    assert {"config.json", "model.safetensors", "LICENSE", "README.md", "build_info.json"} <= {
        p.name for p in folder.iterdir()}
    loaded = DistillMosForQualityScore.from_pretrained(folder).eval()
    clip = torch.randn(1, 20000)
    with torch.no_grad():
        assert float(loaded(clip)) == pytest.approx(float(model(clip)), abs=1e-6)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="did not write"):
        build_encoder.main(["--wheel", str(wheel), "--output_dir", str(foreign)])
    assert (foreign / "notes.txt").read_text() == "mine"
