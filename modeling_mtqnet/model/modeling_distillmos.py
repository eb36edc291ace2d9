"""The Distill-MOS encoder (Stahl and Gamper, ICASSP 2025; MIT licence), written from its published architecture.

waveform window (7.68 s, peak-normalised) -> complex STFT (20 ms Hann, 10 ms hop) with magnitude^0.3 -> six 3x3 convs
(LeakyReLU 0.1; frequency halved from the second on, time halved by the last: 20 ms frames) -> two batch norms ->
linear 1024 -> 200 -> sinusoidal positions -> 7 post-norm transformer layers -> batch norm: 200-d frames. The
published model then pools them with attention into one MOS ([`DistillMosForQualityScore`]); MTQ-Net reads the frames
as its SSL branch ([`DistillMosEncoder`]).

How clips of any length meet a model trained on 7.68 s windows: every clip is cut into consecutive windows of
`window_samples`, the last zero-padded (as short training clips were), each peak-normalised on its own, and only the
clip's own frames are kept. A window sees only its own clip's samples and the batch norms use their stored statistics,
so a clip's frames do not depend on what else is in the batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput

from .configuration_distillmos import DistillMosEncoderConfig


def hann_dft_kernels(size: int, device: torch.device | None = None) -> torch.Tensor:
    """(2 * (size // 2 + 1), 1, size) float32 kernels: the periodic-Hann-windowed cosines, then minus the sines, of
    bins 0..size // 2. A stride-hop conv1d with them is `torch.stft(..., center=False)`'s real and imaginary parts;
    a conv (unlike torch.stft) exports to ONNX. Phases exact, trigonometry in float64."""
    bins = torch.arange(size // 2 + 1, device=device)[:, None]
    samples = torch.arange(size, device=device)[None, :]
    angle = 2 * math.pi * ((bins * samples) % size).double() / size
    window = torch.hann_window(size, periodic=True, dtype=torch.float64, device=device)
    return torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window]).float()[:, None, :]


def compressed_complex_spectrum(windows: torch.Tensor, config: DistillMosEncoderConfig) -> torch.Tensor:
    """(K, window_samples) -> (K, 2, freq, time): real and imaginary parts of the STFT (20 ms Hann, 10 ms hop),
    magnitude raised to `magnitude_exponent`, phase kept.

    The STFT reflect-pads (window - hop) / 2 samples at both ends and is not centred, giving window_samples / hop
    frames. Always float32."""
    pad = (config.stft_window - config.stft_hop) // 2
    with torch.autocast(device_type=windows.device.type, enabled=False):
        padded = F.pad(windows.float()[:, None], (pad, pad), mode="reflect")
        parts = F.conv1d(padded, hann_dft_kernels(config.stft_window, windows.device), stride=config.stft_hop)
        real, imaginary = parts.unflatten(1, (2, -1)).unbind(1)  # (K, F, T) each
        magnitude = (real * real + imaginary * imaginary).sqrt().clamp(min=1e-12)
        gain = magnitude.pow(config.magnitude_exponent) / magnitude
    return torch.stack([real * gain, imaginary * gain], dim=1)


def sinusoidal_positions(frames: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """(frames, width) float32 table: sin on even, cos on odd features, wavelengths up to 2 * frames * 2 pi (the
    published model's base is twice its window's frames, not 10,000). Made on each call, never stored rounded."""
    position = torch.arange(frames, device=device, dtype=torch.float32)[:, None]
    inverse_wavelength = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32)
                                   * (-math.log(2 * frames) / width))
    table = torch.zeros(frames, width, device=device)
    table[:, 0::2] = torch.sin(position * inverse_wavelength)
    table[:, 1::2] = torch.cos(position * inverse_wavelength)
    return table


class DistillMosConvolutions(nn.Module):
    """The conv front-end: (K, 2, 161, 2 * frames) spectra -> (K, frames, channels * 4).

    A window that is mostly zero padding (any clip shorter than 7.68 s) is convolved only over its content and a
    margin: every output frame whose receptive field (13 spectrum columns) lies in the all-zero tail equals the same
    frame of an all-zero window, computed once per set of weights and reused. Exact, and about twice as fast for
    3-4 s clips."""

    # Spectrum columns each side of an output frame's centre column that it reads (five stride-1 convs and the last).
    RECEPTIVE_HALF_WIDTH = 6

    def __init__(self, config: DistillMosEncoderConfig):
        super().__init__()
        layers, channels = [], 2
        for index, out_channels in enumerate(config.cnn_channels):
            frequency_stride = 2 if index >= 1 else 1
            time_stride = 2 if index == len(config.cnn_channels) - 1 else 1
            layers.append(nn.Conv2d(channels, out_channels, 3, stride=(frequency_stride, time_stride), padding=(0, 1)))
            channels = out_channels
        self.convs = nn.ModuleList(layers)
        self.slope = config.leaky_relu_slope
        self._silence: tuple[tuple, torch.Tensor] | None = None  # (weights' identity and versions, output)

    def convolve(self, spectra: torch.Tensor) -> torch.Tensor:
        hidden = spectra.to(self.convs[0].weight.dtype)
        for conv in self.convs:
            hidden = F.leaky_relu(conv(hidden), self.slope)
        return hidden.flatten(1, 2).transpose(1, 2)  # channel-major features per frame, as published

    def silence(self, spectra: torch.Tensor) -> torch.Tensor:
        """The output of an all-zero window shaped like `spectra`'s, (1, frames, features); cached until the
        weights change (in-place updates bump a tensor's version)."""
        key = (spectra.shape[1:], spectra.device, self.convs[0].weight.dtype,
               tuple((p.data_ptr(), p._version) for p in self.parameters()))
        if self._silence is None or self._silence[0] != key:
            with torch.no_grad():
                self._silence = (key, self.convolve(torch.zeros_like(spectra[:1])))
        return self._silence[1]

    def forward(self, spectra: torch.Tensor, content_columns: int | None = None) -> torch.Tensor:
        """`content_columns`: spectrum columns from which on every window of the batch is all zero (None: unknown)."""
        columns = spectra.shape[-1]
        trainable = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if content_columns is None or trainable or torch.jit.is_tracing():
            return self.convolve(spectra)
        # Output frames from `exact_frames` on read only zero columns; a crop of `crop` columns computes the frames
        # before them exactly (each conv layer's right edge moves one column in; the last conv halves time).
        exact_frames = -(-(content_columns + self.RECEPTIVE_HALF_WIDTH) // 2)
        crop = 2 * exact_frames + 4
        if crop >= columns:
            return self.convolve(spectra)
        head = self.convolve(spectra[..., :crop])[:, :exact_frames]
        tail = self.silence(spectra)[:, exact_frames:]
        return torch.cat([head, tail.expand(spectra.shape[0], -1, -1)], dim=1)


class DistillMosTransformerLayer(nn.Module):
    """Post-norm transformer encoder layer: x = LN(x + MHA(x)); x = LN(x + W2 relu(W1 x))."""

    def __init__(self, config: DistillMosEncoderConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.attention_output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.feed_forward_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # (K, T, 3 * D) -> three (K, heads, T, D / heads); shapes left to -1 so that an ONNX trace stays dynamic
        query, key, value = self.qkv(hidden).unflatten(-1, (3, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(query, key, value)  # every frame of the window, as trained
        attended = attended.transpose(1, 2).flatten(2)
        hidden = self.attention_norm(hidden + self.attention_output(attended))
        return self.output_norm(hidden + self.feed_forward_out(F.relu(self.feed_forward_in(hidden))))


class DistillMosPreTrainedModel(PreTrainedModel):
    config_class = DistillMosEncoderConfig
    config: DistillMosEncoderConfig
    base_model_prefix = "distillmos"
    main_input_name = "input_values"
    # As MTQ-Net's SSL branch, loaded in bfloat16 / float16 the encoder stays float32: rounded, its compressed spectra
    # and batch norms moved the shipped teacher's PESQ by 0.13 on average (0.003 with the encoder in float32).
    _keep_in_fp32_modules_strict = ["ssl_encoder"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Only for training from nothing; the published weights replace all of these.
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm1d):
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)

    def train(self, mode: bool = True) -> "DistillMosPreTrainedModel":
        """Batch norms keep their published statistics also when fine-tuning: batch statistics would make a clip's
        frames depend on the rest of the batch."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.eval()
        return self


def batch_norm_frames(norm: nn.BatchNorm1d, frames: torch.Tensor) -> torch.Tensor:
    """A BatchNorm1d over the features of (K, T, D) frames."""
    return norm(frames.transpose(1, 2)).transpose(1, 2)


# The first conv's output of one window holds 64 x 159 x 768 numbers (31 MB in float32): eight windows (61 s of audio)
# at a time keep a pass near 0.5 GB however long the audio.
WINDOWS_PER_PASS = 8


class DistillMosEncoder(DistillMosPreTrainedModel):
    """Distill-MOS without its pooling head: waveforms -> 200-d frames every 20 ms.

    `hidden_states` (with `output_hidden_states=True`) holds `num_hidden_layers + 1` tensors: the transformer's input
    (projected, with positions) and each layer's output, the last one after the final batch norm, as
    `last_hidden_state` (the frames the published pooling head reads)."""

    # Loaded from the published model's folder, the pooling head is not part of the encoder.
    _keys_to_ignore_on_load_unexpected = [r"^pooling\."]

    def __init__(self, config: DistillMosEncoderConfig):
        super().__init__(config)
        self.convolutions = DistillMosConvolutions(config)
        conv_features = config.cnn_channels[-1] * config.frequency_bins_out
        self.input_norm = nn.BatchNorm1d(conv_features, eps=config.batch_norm_eps)
        self.projection_norm = nn.BatchNorm1d(conv_features, eps=config.batch_norm_eps)
        self.projection = nn.Linear(conv_features, config.hidden_size)
        self.layers = nn.ModuleList(DistillMosTransformerLayer(config) for _ in range(config.num_hidden_layers))
        self.output_norm = nn.BatchNorm1d(config.hidden_size, eps=config.batch_norm_eps)
        self.post_init()

    def freeze_feature_encoder(self) -> None:
        """Fix the conv front-end (fine-tuning then trains the transformer), as for wav2vec2-style encoders."""
        self.convolutions.requires_grad_(False)

    def _get_feat_extract_output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames of clips of `lengths` samples: one per started 20 ms (ceil(n / frame_stride))."""
        stride = self.config.frame_stride
        return torch.div(lengths + stride - 1, stride, rounding_mode="floor")

    def encode_windows(self, windows: torch.Tensor, output_hidden_states: bool = False,
                       content_samples: int | None = None) -> tuple[torch.Tensor, ...]:
        """(K, window_samples) raw windows -> per-layer (K, frames_per_window, hidden) frames (see the class doc).
        Each window is peak-normalised on its own, as the published model does. `content_samples`: every window is
        zero from this sample on (None: unknown), which lets the convs skip the silent tail. Windows are encoded
        `WINDOWS_PER_PASS` at a time, so that memory stays bounded for long audio."""
        if windows.shape[0] > WINDOWS_PER_PASS and not torch.jit.is_tracing():
            passes = [self.encode_windows(part, output_hidden_states, content_samples)
                      for part in windows.split(WINDOWS_PER_PASS)]
            return tuple(torch.cat(layer) for layer in zip(*passes))
        windows = windows / (windows.abs().amax(-1, keepdim=True) + 1e-8)
        content_columns = None
        if content_samples is not None:
            # STFT column k reads samples from k * hop - (window - hop) / 2 on: all zero once that is past the content.
            pad = (self.config.stft_window - self.config.stft_hop) // 2
            content_columns = -(-(content_samples + pad) // self.config.stft_hop)
        features = self.convolutions(compressed_complex_spectrum(windows, self.config), content_columns)
        features = batch_norm_frames(self.projection_norm, batch_norm_frames(self.input_norm, features))
        hidden = self.projection(features)
        hidden = hidden + sinusoidal_positions(hidden.shape[1], hidden.shape[2], hidden.device).to(hidden.dtype)
        states = [hidden]
        for layer in self.layers:
            hidden = layer(hidden)
            states.append(hidden)
        states[-1] = batch_norm_frames(self.output_norm, hidden)
        return tuple(states) if output_hidden_states else (states[-1],)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutput:
        """Args:
        input_values: (B, N) waveforms at 16 kHz, zero-padded.
        attention_mask: (B, N), 1 for real samples; None: every sample is real.

        Returns frames (B, ceil(N / 320), hidden); a clip's frames past its own `ceil(n / 320)` are padding.
        """
        if attention_mask is None:
            states = self.encode_unpadded(input_values, output_hidden_states)
            return BaseModelOutput(last_hidden_state=states[-1], hidden_states=states if output_hidden_states else None)
        batch, samples = input_values.shape
        window = self.config.window_samples
        windows_per_row = -(-samples // window)
        input_values = input_values * attention_mask.to(input_values.dtype)
        rows = F.pad(input_values, (0, windows_per_row * window - samples)).reshape(batch * windows_per_row, window)
        # Encode only windows that hold some of their clip (a short clip in a long batch needs one).
        lengths = attention_mask.long().sum(-1)
        needed = (torch.arange(windows_per_row, device=rows.device)[None, :] * window < lengths[:, None])
        needed[:, 0] = True
        needed = needed.reshape(-1)
        content = int(lengths.max()) if windows_per_row == 1 else None  # a short batch: its silent tail
        encoded = self.encode_windows(rows[needed], output_hidden_states, content)
        states = []
        for frames in encoded:
            full = frames.new_zeros(batch * windows_per_row, *frames.shape[1:])
            full[needed] = frames
            states.append(full)
        frames = -(-samples // self.config.frame_stride)
        states = tuple(s.reshape(batch, windows_per_row * s.shape[1], s.shape[2])[:, :frames] for s in states)
        return BaseModelOutput(last_hidden_state=states[-1], hidden_states=states if output_hidden_states else None)

    def encode_unpadded(self, input_values: torch.Tensor, output_hidden_states: bool = False
                        ) -> tuple[torch.Tensor, ...]:
        """Frames of (B, N) unpadded clips of one length (every sample real), per layer. Lengths are computed as
        tensors from the input's shape, so that an ONNX trace keeps the time axis dynamic."""
        window, stride = self.config.window_samples, self.config.frame_stride
        samples = torch._shape_as_tensor(input_values)[1]
        windows_per_row = torch.div(samples + window - 1, window, rounding_mode="floor")
        silence = torch.zeros_like(input_values[:, :1]).expand(-1, window)
        rows = torch.cat([input_values, silence], dim=1)[:, : windows_per_row * window].reshape(-1, window)
        single_window = not torch.jit.is_tracing() and rows.shape[0] == input_values.shape[0]
        encoded = self.encode_windows(rows, output_hidden_states, input_values.shape[1] if single_window else None)
        frames = torch.div(samples + stride - 1, stride, rounding_mode="floor")
        return tuple(s.reshape(-1, windows_per_row * s.shape[1], s.shape[2])[:, :frames] for s in encoded)


class DistillMosAttentionPooling(nn.Module):
    """The published head: attention weights from a 2-layer MLP, softmax over a window's frames, then a linear score."""

    def __init__(self, config: DistillMosEncoderConfig):
        super().__init__()
        self.attention_in = nn.Linear(config.hidden_size, 2 * config.hidden_size)
        self.attention_out = nn.Linear(2 * config.hidden_size, 1)
        self.score = nn.Linear(config.hidden_size, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.attention_out(F.relu(self.attention_in(frames))), dim=1)  # (K, T, 1)
        return self.score((weights * frames).sum(1))[:, 0]


#: Longest step between the starts of the published model's windows over a long clip (1 s at 16 kHz).
PUBLISHED_MAX_CROP_HOP = 16000


class DistillMosForQualityScore(DistillMosPreTrainedModel):
    """The published Distill-MOS: the encoder and its pooling head, MOS 1..5 (used to check the conversion, and as a
    reference score beside MTQ-Net's)."""

    def __init__(self, config: DistillMosEncoderConfig):
        super().__init__(config)
        self.distillmos = DistillMosEncoder(config)
        self.pooling = DistillMosAttentionPooling(config)
        self.post_init()

    def forward(self, input_values: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """(B, N) equal-length 16 kHz clips -> (B,) MOS, as the published model scores them: a clip shorter than a
        window is zero-padded to one; a longer one is read in windows starting at evenly spaced points (at most 1 s
        apart) from its start to its end, and their MOS averaged. Each window is peak-normalised."""
        window, samples = self.config.window_samples, input_values.shape[1]
        overlength = max(0, samples - window)
        if overlength == 0:
            crops = [F.pad(input_values, (0, window - samples))]
        else:
            # numpy.linspace's arithmetic (i * step, the last exactly 1), so that the crops start where published
            count = math.ceil(overlength / PUBLISHED_MAX_CROP_HOP) + 1
            starts = [index * (1.0 / (count - 1)) for index in range(count - 1)] + [1.0]
            crops = [input_values[:, int(start * overlength): int(start * overlength) + window] for start in starts]
        frames = self.distillmos.encode_windows(torch.cat(crops), content_samples=min(samples, window))[0]
        quality = torch.sigmoid(self.pooling(frames).float()).reshape(len(crops), -1).mean(0)
        return 1 + 4 * quality


AutoModel.register(DistillMosEncoderConfig, DistillMosEncoder, exist_ok=True)

__all__ = ["DistillMosEncoder", "DistillMosForQualityScore", "DistillMosPreTrainedModel"]
