"""The block-wise WavLM attention and the CNN's passes: the memory-bounded paths give the reference's outputs."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, HubertConfig, WavLMConfig
from transformers.models.wavlm.modeling_wavlm import WavLMAttention

from modeling_mtqnet.model import modeling_mtqnet, wavlm_attention
from modeling_mtqnet.model.wavlm_attention import BlockwiseWavLMAttention, use_blockwise_wavlm_attention
from tests.helpers import build_model, noisy_tone, tiny_ssl_config
from tests.model.test_modeling import clips_of, featurise


def small_wavlm(norm: str, seed: int = 0) -> torch.nn.Module:
    """A 3-layer WavLM with transformers' attention (the reference), 4 heads, ~50 frames per second."""
    torch.manual_seed(seed)
    config = WavLMConfig(**{**tiny_ssl_config(norm), "num_hidden_layers": 3, "num_attention_heads": 4,
                            "hidden_size": 32, "num_buckets": 32, "max_bucket_distance": 60})
    return AutoModel.from_config(config)


def waveforms_and_mask() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    waveforms = torch.randn(2, 16000)
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 9000:] = 0
    waveforms[1, 9000:] = 0
    return waveforms, mask


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_blockwise_attention_matches_transformers_in_several_blocks(norm, monkeypatch):
    """Every layer's hidden states agree with WavLMAttention's (<= 1e-5) when the queries run in many blocks, with
    padded keys masked (the layer-norm encoder takes an attention mask)."""
    encoder = small_wavlm(norm).eval()
    waveforms, mask = waveforms_and_mask()
    mask = mask if norm == "layer" else None
    with torch.no_grad():
        reference = encoder(waveforms, attention_mask=mask, output_hidden_states=True).hidden_states
        assert use_blockwise_wavlm_attention(encoder) == 3
        frames = reference[0].shape[1]
        monkeypatch.setattr(wavlm_attention, "BLOCK_SCORES", 2 * 4 * frames * 7)  # 7 queries per block
        blockwise = encoder(waveforms, attention_mask=mask, output_hidden_states=True).hidden_states
    assert all(type(layer.attention) is BlockwiseWavLMAttention for layer in encoder.encoder.layers)
    for expected, found in zip(reference, blockwise, strict=True):
        assert (expected - found).abs().max() <= 1e-5


def test_blockwise_attention_gives_the_same_gradients(monkeypatch):
    def gradients(blockwise: bool) -> list[torch.Tensor]:
        encoder = small_wavlm("layer", seed=2).train()
        encoder.config.layerdrop = 0.0
        for module in encoder.modules():  # no dropout anywhere, so both runs compute the same function
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            if isinstance(module, WavLMAttention):
                module.dropout = 0.0
        if blockwise:
            use_blockwise_wavlm_attention(encoder)
            monkeypatch.setattr(wavlm_attention, "BLOCK_SCORES", 2 * 4 * 50 * 5)
        waveforms, mask = waveforms_and_mask()
        encoder(waveforms, attention_mask=mask).last_hidden_state.square().mean().backward()
        attention = encoder.encoder.layers[0].attention
        return [attention.q_proj.weight.grad, attention.rel_attn_embed.weight.grad, attention.gru_rel_pos_const.grad]

    for expected, found in zip(gradients(False), gradients(True), strict=True):
        assert torch.allclose(expected, found, atol=1e-6, rtol=1e-4)


def test_the_swap_keeps_the_weights_and_hands_on_a_linear_bias():
    encoder = small_wavlm("group").eval()
    before = {name: value.clone() for name, value in encoder.state_dict().items()}
    use_blockwise_wavlm_attention(encoder)
    after = encoder.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[name], after[name]) for name in before)
    # What the first layer hands on is one bias row per head and distance, not a (heads, T, T) tensor.
    first = encoder.encoder.layers[0].attention
    hidden = torch.randn(1, 40, 32)
    _, weights, handed_on = first(hidden)
    assert weights is None and handed_on.shape == (4, 2 * 40 - 1)
    reference = WavLMAttention.compute_bias(first, 40, 40)  # (heads, query, key)
    query, key = 5, 31
    assert torch.equal(handed_on[:, 40 - 1 + key - query], reference[:, query, key])
    assert use_blockwise_wavlm_attention(encoder, enabled=False) == 3
    assert all(type(layer.attention) is WavLMAttention for layer in encoder.encoder.layers)


def test_models_use_the_blockwise_attention_and_other_encoders_are_left_alone():
    model = build_model()
    assert all(type(layer.attention) is BlockwiseWavLMAttention for layer in model.mtqnet.ssl_encoder.encoder.layers)
    hubert = AutoModel.from_config(HubertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16,),
        conv_stride=(5,), conv_kernel=(10,), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2))
    assert use_blockwise_wavlm_attention(hubert) == 0


@pytest.mark.parametrize("fusion_mode", ["aligned", "time"])
def test_small_cnn_passes_and_attention_blocks_give_the_same_scores(fusion_mode, monkeypatch):
    """A padded batch scored with the CNN one clip per pass and the attention in small blocks gives the scores of
    one pass (<= 1e-5), and each clip alone still gives its batched score (<= 1e-4)."""
    model = build_model(fusion_mode=fusion_mode, ssl_config=tiny_ssl_config("layer"))
    clips = clips_of()
    batch = featurise(model, clips)
    with torch.no_grad():
        one_pass = model(**batch)
        monkeypatch.setattr(modeling_mtqnet, "CNN_PASS_VALUES", 1)  # one clip per pass
        monkeypatch.setattr(wavlm_attention, "BLOCK_SCORES", 1)  # one query per block
        split = model(**batch)
        alone = [model(**featurise(model, [clip])).logits[0] for clip in clips]
    assert (one_pass.logits - split.logits).abs().max() <= 1e-5
    frames = one_pass.frame_mask
    assert ((one_pass.frame_scores - split.frame_scores) * frames[..., None]).abs().max() <= 1e-5
    assert (torch.stack(alone) - split.logits).abs().max() <= 1e-4


def test_the_cnn_pass_size_follows_the_clips_length(monkeypatch):
    """The pass size follows the clips' length: with a budget of two short clips, a batch of three short clips
    takes two passes and gives the one-pass scores."""
    model = build_model(fusion_mode="time")
    clips = [noisy_tone(1.0, snr_db=snr, seed=snr) for snr in (0, 10, 20)]
    batch = featurise(model, clips)
    frames = batch["input_values"].shape[1] // model.config.hop_length + 1
    calls = []
    convolve = modeling_mtqnet.MTQNetCNN.convolve
    monkeypatch.setattr(modeling_mtqnet.MTQNetCNN, "convolve",
                        lambda self, images, mask: calls.append(images.shape[0]) or convolve(self, images, mask))
    with torch.no_grad():
        one_pass = model(**batch).logits
        assert calls == [3]
        width = model.mtqnet.cnn.widest_values_per_frame
        monkeypatch.setattr(modeling_mtqnet, "CNN_PASS_VALUES", 2 * width * 2 * frames)  # two clips' time-fused image
        split = model(**batch).logits
    assert calls[1:] == [2, 1]
    assert (one_pass - split).abs().max() <= 1e-5
