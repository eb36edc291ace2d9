"""MTQ-Net: non-intrusive speech quality assessment with multi-task pseudo-label learning (Zezario et al., 2024).

The trunk follows the MOSA-Net reference (described in docs/model.md of the MTQ-Net repository) with three
deliberate deviations, all for batch invariance (a clip scores the same alone and inside a padded batch):
- the centred STFT reflect-pads each clip at its own end, not at the batch's;
- the sinc filterbank's 'same' padding is fixed at (kernel_size - 1) // 2 on the left (Keras makes it depend on the
  clip length modulo the stride), and it yields one frame per STFT frame (1 + N // hop) so both images line up;
- every layer that mixes time (CNN 'same' edges, BLSTM, attention keys, pooling) sees only the clip's own frames:
  padding is zeroed after every conv, the BLSTM runs on packed sequences, attention masks padded keys, and SSL
  encoders whose front-end normalises over time (group norm: wav2vec2-base, WavLM-base) encode each clip at its own
  length.
The reference's own bugs are not reproduced: the sinc filters are trained, CNN output is permuted before flattening,
and attention runs over frames of the right axis.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_mtqnet import MTQNetConfig, ssl_frame_geometry
from .modeling_distillmos import DistillMosEncoder
from .wavlm_attention import use_blockwise_wavlm_attention

# Frame sections of "time" fusion, as recorded in `frame_sections`.
SECTION_SPECTRAL, SECTION_SINC, SECTION_SSL = 0, 1, 2
SECTION_NAMES = ("spectral", "sinc", "ssl")


@dataclass
class MTQNetModelOutput(ModelOutput):
    """Output of the trunk.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, frames, dense_size)`): per-frame features for the heads.
        frame_mask (`torch.BoolTensor` of shape `(batch, frames)`): True for the clip's own frames, False for padding.
        frame_times (`torch.FloatTensor` of shape `(batch, frames)`): centre of each frame, in seconds from the start.
        frame_sections (`torch.LongTensor` of shape `(batch, frames)`): 0 spectral, 1 sinc, 2 SSL ("time" fusion
            concatenates the three along time; "aligned" fusion has one section, 0).
    """

    last_hidden_state: torch.FloatTensor | None = None
    frame_mask: torch.BoolTensor | None = None
    frame_times: torch.FloatTensor | None = None
    frame_sections: torch.LongTensor | None = None


@dataclass
class SpeechQualityOutput(ModelOutput):
    """Output of [`MTQNetForSpeechQualityAssessment`].

    Args:
        loss (`torch.FloatTensor`, *optional*): the MPL objective, when `labels` or `pseudo_labels` are given.
        logits (`torch.FloatTensor` of shape `(batch, n_primary)`): utterance scores, in `config.target_names` order.
        frame_scores (`torch.FloatTensor` of shape `(batch, frames, n_primary)`): per-frame scores (padding frames are
            meaningless; use `frame_mask`).
        frame_mask (`torch.BoolTensor` of shape `(batch, frames)`): valid frames.
        auxiliary_logits (`torch.FloatTensor` of shape `(batch, n_auxiliary)`, *optional*): pseudo-label predictions.
        auxiliary_frame_scores (`torch.FloatTensor` of shape `(batch, frames, n_auxiliary)`, *optional*).
        frame_times (`torch.FloatTensor` of shape `(batch, frames)`): frame centres in seconds.
        frame_sections (`torch.LongTensor` of shape `(batch, frames)`): see [`MTQNetModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    frame_scores: torch.FloatTensor | None = None
    frame_mask: torch.BoolTensor | None = None
    auxiliary_logits: torch.FloatTensor | None = None
    auxiliary_frame_scores: torch.FloatTensor | None = None
    frame_times: torch.FloatTensor | None = None
    frame_sections: torch.LongTensor | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Objective (paper eq. 1-3). One function serves the model's forward and the Trainer.
# ----------------------------------------------------------------------------------------------------------------------


def pointwise_loss(prediction: torch.Tensor, target: torch.Tensor, loss_type: str, delta: float) -> torch.Tensor:
    """Huber_delta(e) = e^2/2 if |e| <= delta else delta(|e| - delta/2); or e^2 (mse); or |e| (mae). No reduction."""
    if loss_type == "huber":
        return F.huber_loss(prediction, target, reduction="none", delta=delta)
    if loss_type == "mse":
        return (prediction - target) ** 2
    if loss_type == "mae":
        return (prediction - target).abs()
    raise ValueError(f"Unknown loss_type {loss_type!r}; use huber, mse or mae")


@dataclass
class TargetLossSums:
    """Per-target sums over utterances, so that a caller can normalise by a count larger than one batch (gradient
    accumulation): L_k = (utterance[k] + alpha * frame[k]) / count[k]."""

    utterance: torch.Tensor  # (K,) sum over labelled utterances of loss(S_u, Ŝ_u)
    frame: torch.Tensor  # (K,) sum over labelled utterances of mean over valid frames of loss(S_u, ŝ_f)
    count: torch.Tensor  # (K,) number of labelled utterances


def target_loss_sums(
    utterance_scores: torch.Tensor,
    frame_scores: torch.Tensor,
    frame_mask: torch.Tensor,
    targets: torch.Tensor,
    loss_type: str = "huber",
    delta: float = 1.0,
) -> TargetLossSums:
    """Utterance- and frame-level loss sums per target; NaN targets (missing labels) drop just their own terms.

    Args:
        utterance_scores: (B, K) predictions. frame_scores: (B, T, K). frame_mask: (B, T) valid frames.
        targets: (B, K) labels, NaN where missing. The frame target is the utterance label repeated over frames.
    """
    targets = targets.to(utterance_scores.dtype)
    labelled = ~torch.isnan(targets)
    safe_targets = torch.where(labelled, targets, torch.zeros_like(targets))
    weights = labelled.to(utterance_scores.dtype)
    utterance = (pointwise_loss(utterance_scores, safe_targets, loss_type, delta) * weights).sum(0)
    frame_weights = frame_mask.to(frame_scores.dtype).unsqueeze(-1)  # (B, T, 1)
    per_frame = pointwise_loss(frame_scores, safe_targets.unsqueeze(1).expand_as(frame_scores), loss_type, delta)
    frames_per_clip = frame_weights.sum(1).clamp(min=1.0)  # F_u, (B, 1)
    frame = ((per_frame * frame_weights).sum(1) / frames_per_clip * weights).sum(0)
    return TargetLossSums(utterance=utterance, frame=frame, count=labelled.sum(0))


def check_labels(labels: torch.Tensor, names: list[str], ranges: list[list[float] | None], kind: str) -> None:
    """Missing labels are NaN; anything infinite or outside a target's range is an error, not a silent bad loss."""
    if labels.dim() != 2 or labels.shape[1] != len(names):
        raise ValueError(f"{kind} must have shape (batch, {len(names)}) for targets {names}, got {tuple(labels.shape)}")
    if torch.isinf(labels).any():
        raise ValueError(f"{kind} contain Inf values (use NaN for a missing label)")
    for index, (name, value_range) in enumerate(zip(names, ranges)):
        column = labels[:, index]
        column = column[~torch.isnan(column)]
        if value_range is not None and column.numel() and ((column < value_range[0]) | (column > value_range[1])).any():
            raise ValueError(
                f"{kind} for target {name!r} fall outside its range {value_range}: "
                f"min {column.min().item():.3f}, max {column.max().item():.3f}"
            )


def speech_quality_objective(
    outputs: SpeechQualityOutput,
    labels: torch.Tensor | None,
    pseudo_labels: torch.Tensor | None,
    config: MTQNetConfig,
    counts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The MPL objective O = L_superv + w * L_semi, L_k = L_utt + alpha * L_fr for every target (paper eq. 1-3).

    Args:
        outputs: the model's output (utterance and frame scores, frame mask).
        labels: (B, n_primary) primary labels, NaN where missing; or None.
        pseudo_labels: (B, n_auxiliary) pseudo labels, NaN where missing; or None.
        config: gives loss type, Huber delta, alpha (`frame_loss_weight`), w (`pseudo_label_loss_weight`), ranges.
        counts: optional (n_primary + n_auxiliary,) numbers of labelled utterances to normalise by, e.g. counted over
            all micro-batches of one optimiser step so that gradient accumulation equals one large batch. Defaults to
            this batch's counts.

    Returns:
        (loss, components): components hold `loss_superv`, `loss_semi` and `loss_<target>` for every target, detached.
    """
    blocks = []  # (names, ranges, utterance scores, frame scores, labels)
    if labels is not None:
        check_labels(labels, config.target_names, config.target_ranges, "labels")
        blocks.append((config.target_names, outputs.logits, outputs.frame_scores, labels))
    if pseudo_labels is not None:
        if not config.auxiliary_target_names:
            raise ValueError("pseudo_labels were given but this model has no auxiliary (pseudo-label) heads")
        check_labels(pseudo_labels, config.auxiliary_target_names, config.auxiliary_target_ranges, "pseudo_labels")
        blocks.append(
            (config.auxiliary_target_names, outputs.auxiliary_logits, outputs.auxiliary_frame_scores, pseudo_labels)
        )
    sums = [
        target_loss_sums(utterance, frames, outputs.frame_mask, targets, config.loss_type, config.huber_delta)
        for _, utterance, frames, targets in blocks
    ]
    names = [name for block in blocks for name in block[0]]
    utterance = torch.cat([s.utterance for s in sums])
    frame = torch.cat([s.frame for s in sums])
    if counts is None:
        counts = torch.cat([s.count for s in sums])
    else:
        all_names = list(config.target_names) + list(config.auxiliary_target_names)
        counts = counts.to(utterance.device)[[all_names.index(name) for name in names]]
    per_target = (utterance + config.frame_loss_weight * frame) / counts.to(utterance.dtype).clamp(min=1.0)
    is_auxiliary = torch.tensor([name in config.auxiliary_target_names for name in names], device=per_target.device)
    loss_superv = per_target[~is_auxiliary].sum()
    loss_semi = per_target[is_auxiliary].sum()
    loss = loss_superv + config.pseudo_label_loss_weight * loss_semi
    components = {"loss_superv": loss_superv.detach(), "loss_semi": loss_semi.detach()}
    components.update({f"loss_{name}": value.detach() for name, value in zip(names, per_target)})
    return loss, components


# ----------------------------------------------------------------------------------------------------------------------
# Trunk building blocks
# ----------------------------------------------------------------------------------------------------------------------


def stft_frame_count(lengths: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Frames of a centred STFT of clips with these lengths: 1 + N // hop."""
    return 1 + torch.div(lengths, hop_length, rounding_mode="floor")


def lengths_to_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    max_length = int(lengths.max()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def frame_mask_of(frames: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """(B, T) True for the valid frames of (B, T, D) `frames`. `lengths` None means unpadded clips (the ONNX graph):
    every frame is valid, and the mask is built from a shape so that a trace keeps the time axis dynamic."""
    if lengths is None:
        return torch.ones_like(frames[..., 0], dtype=torch.bool)
    return lengths_to_mask(lengths, frames.shape[1])


def concat_along_time(
    sections: list[tuple[torch.Tensor, torch.Tensor | None]],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate each clip's valid frames of several (B, T_i, D) sections, then re-pad. Returns (B, T, D), lengths.

    With every length None (unpadded clips) the sections are concatenated as they are and the lengths stay None."""
    if all(lengths is None for _, lengths in sections):
        return torch.cat([frames for frames, _ in sections], dim=1), None
    batch_size = sections[0][0].shape[0]
    rows = [torch.cat([x[b, : int(n[b])] for x, n in sections], dim=0) for b in range(batch_size)]
    lengths = sum(n for _, n in sections)
    return pad_sequence(rows, batch_first=True), lengths


class SpectralBranch(nn.Module):
    """Linear |STFT| (n_fft 512, hop 256, Hamming, centred) -> (B, T, n_fft//2 + 1), always in float32."""

    def __init__(self, config: MTQNetConfig):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = config.n_fft, config.hop_length, config.win_length

    def window(self, device: torch.device | None = None) -> torch.Tensor:
        """The float32 Hamming window, made on each call (a buffer would be rounded in a bfloat16 model)."""
        return torch.hamming_window(self.win_length, periodic=True, device=device, dtype=torch.float32)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pad = self.n_fft // 2
        # Reflect-pad each clip at its own end (a batched centred STFT would reflect the batch's zero padding).
        padded = pad_sequence(
            [F.pad(waveforms[b, : int(n)].float()[None], (pad, pad), mode="reflect")[0] for b, n in enumerate(lengths)],
            batch_first=True,
        )
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            spectrum = torch.stft(
                padded,
                n_fft=self.n_fft,
                hop_length=self.hop_length,
                win_length=self.win_length,
                window=self.window(waveforms.device),
                center=False,
                return_complex=True,
            ).abs()
        return spectrum.transpose(1, 2)  # (B, T, F)


def _hz_to_mel(hz: float) -> float:
    return 2595 * math.log10(1 + hz / 700)


class SincFilterbank(nn.Module):
    """Learnable band-pass sinc filters (SincNet, Ravanelli & Bengio 2018) applied with a frame-rate stride.

    Only the low cut-offs and band widths are parameters; the time axis and Hamming window are made in float32 on each
    call (they are not in the checkpoint).
    """

    def __init__(self, config: MTQNetConfig):
        super().__init__()
        self.num_filters, self.kernel_size = config.sinc_num_filters, config.sinc_kernel_size
        self.sampling_rate, self.stride = config.sampling_rate, config.hop_length
        self.min_low_hz, self.min_band_hz = float(config.sinc_min_low_hz), float(config.sinc_min_band_hz)
        self.low_hz_ = nn.Parameter(torch.zeros(self.num_filters, 1), requires_grad=config.sinc_trainable)
        self.band_hz_ = nn.Parameter(torch.zeros(self.num_filters, 1), requires_grad=config.sinc_trainable)

    def time_axis_and_window(self, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Left half of the filter's time axis (2*pi*n/fs, n < 0) and the matching half Hamming window, in float32.

        Computed on every call rather than kept as buffers: a model loaded or cast to bfloat16 would round the axis
        (8 bits of mantissa move a 125-tap filter's phases by whole cycles)."""
        half = self.kernel_size // 2
        n_lin = torch.linspace(0, half - 1, steps=half, device=device, dtype=torch.float32)
        window = 0.54 - 0.46 * torch.cos(2 * math.pi * n_lin / self.kernel_size)
        time_axis = 2 * math.pi * torch.arange(-half, 0, device=device).float().view(1, -1) / self.sampling_rate
        return time_axis, window

    def mel_initial_bands(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mel-spaced band edges from the minimum low cut-off up to fs/2 (minus the minimum margins)."""
        high_hz = self.sampling_rate / 2 - (self.min_low_hz + self.min_band_hz)
        mel_edges = torch.linspace(_hz_to_mel(self.min_low_hz), _hz_to_mel(high_hz), self.num_filters + 1)
        hz = 700 * (10 ** (mel_edges / 2595) - 1)
        return (hz[:-1] - self.min_low_hz).view(-1, 1), torch.diff(hz).view(-1, 1)

    def filters(self) -> torch.Tensor:
        """(filters, 1, kernel_size) band-pass kernels, always in float32 (band edges in Hz need its precision)."""
        time_axis, window = self.time_axis_and_window(self.low_hz_.device)
        low = self.min_low_hz + self.low_hz_.float().abs()
        high = torch.clamp(low + self.min_band_hz + self.band_hz_.float().abs(), self.min_low_hz, self.sampling_rate / 2)
        band = (high - low)[:, 0]
        left = (torch.sin(high @ time_axis) - torch.sin(low @ time_axis)) / (time_axis / 2) * window
        center = 2 * band.view(-1, 1)
        band_pass = torch.cat([left, center, torch.flip(left, dims=[1])], dim=1) / (2 * band[:, None])
        return band_pass.view(self.num_filters, 1, self.kernel_size)

    def forward(self, waveforms: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, N) zero-padded waveforms -> (B, num_frames, filters) in float32, frame t centred on sample t * hop."""
        left = (self.kernel_size - 1) // 2
        right = (num_frames - 1) * self.stride + self.kernel_size - waveforms.shape[1] - left  # may crop (< 0)
        padded = F.pad(waveforms[:, None].float(), (left, right))
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            return F.conv1d(padded, self.filters(), stride=self.stride).transpose(1, 2)


# The CNN runs on as many clips at a time as keep one conv's output under this many numbers (256 MB in float32):
# at batch 8 x 60 s one pass would hold about 1 GB per activation of the first block. Short batches run in one pass.
CNN_PASS_VALUES = 2**26


class MTQNetCNN(nn.Module):
    """12 Conv2d 3x3 'same' + ReLU in 4 blocks (16, 32, 64, 128 ch); each block's last conv strides frequency by 3.

    Padding frames are zeroed after every conv, so that a conv's time edge sees zeros exactly as for a clip alone.
    Each clip is convolved on its own, so a long batch is split into passes of whole clips (`CNN_PASS_VALUES`): the
    same outputs, with memory bounded by the pass rather than the batch.
    """

    def __init__(self, config: MTQNetConfig, in_channels: int):
        super().__init__()
        layers, channels = [], in_channels
        frequencies, widest = config.num_frequency_bins, 0
        for out_channels in config.cnn_channels:
            for index in range(config.cnn_convs_per_block):
                last = index == config.cnn_convs_per_block - 1
                stride = (1, config.cnn_frequency_stride) if last else (1, 1)
                layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, stride=stride, padding=1))
                channels = out_channels
                frequencies = (frequencies - 1) // stride[1] + 1
                widest = max(widest, out_channels * frequencies)
        self.convs = nn.ModuleList(layers)
        self.output_size = channels * config.cnn_output_frequencies
        self.widest_values_per_frame = widest  # the largest conv output of one frame (16 x 257 in the reference)

    def forward(self, images: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """(B, C, T, F) -> (B, T, C_out * F_out); channels and frequency flattened per frame (time kept first)."""
        batch, frames = images.shape[0], images.shape[2]
        clips_per_pass = max(1, CNN_PASS_VALUES // max(1, self.widest_values_per_frame * frames))
        if clips_per_pass >= batch:
            return self.convolve(images, frame_mask)
        passes = [slice(start, start + clips_per_pass) for start in range(0, batch, clips_per_pass)]
        return torch.cat([self.convolve(images[rows], frame_mask[rows]) for rows in passes])

    def convolve(self, images: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """One pass of the 12 convs over (b, C, T, F) images."""
        # The float32 spectral / sinc images enter at the convs' dtype (bfloat16 for a model loaded in it).
        images = images.to(self.convs[0].weight.dtype)
        time_mask = frame_mask[:, None, :, None].to(images.dtype)
        hidden = images * time_mask
        for conv in self.convs:
            hidden = F.relu(conv(hidden)) * time_mask.to(hidden.dtype)
        batch, channels, frames, freqs = hidden.shape
        return hidden.permute(0, 2, 1, 3).reshape(batch, frames, channels * freqs)


class AttentionScoreHead(nn.Module):
    """One target: multiplicative self-attention over frames, a per-frame score, average over valid frames.

    e_tt' = x_t^T W x_t' + b, a = softmax_t'(e) over valid t', c_t = sum_t' a_tt' x_t'; frame score = Dense(1)(c_t)
    through the target's activation; utterance score = mean of frame scores over valid frames. Computed with
    `scaled_dot_product_attention`, in memory linear in the number of frames.
    """

    def __init__(self, hidden_size: int, activation: str, value_range: list[float] | None):
        super().__init__()
        self.attention_weight = nn.Linear(hidden_size, hidden_size, bias=False)
        self.attention_bias = nn.Parameter(torch.zeros(1))
        self.score = nn.Linear(hidden_size, 1)
        self.activation = activation
        self.value_range = value_range

    def forward(self, hidden: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # softmax_t'(x_t^T W x_t' + b) x_t' is scaled dot-product attention with query W x_t, key and value x_t' and
        # scale 1 (the bias b shifts every energy of a row alike, which softmax ignores; it stays a parameter so that
        # checkpoints keep their keys). SDPA never materialises the T x T energies: memory grows linearly with the
        # clip. Float32 throughout, as the softmax always was.
        # The heads (attention, score, pooling) run at their own dtype, float32 unless cast on purpose, also under
        # autocast (`_keep_in_fp32_modules_strict` keeps them float32 when a model is loaded in bfloat16/float16).
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            hidden = hidden.to(self.score.weight.dtype)
            query = self.attention_weight(hidden).float()[:, None]
            keys = hidden.float()[:, None]
            context = F.scaled_dot_product_attention(query, keys, keys, attn_mask=frame_mask[:, None, None, :],
                                                     scale=1.0)[:, 0].to(hidden.dtype)
            frame_scores = self.score(context).squeeze(-1).float()
        if self.activation == "sigmoid":
            low, high = self.value_range
            frame_scores = low + (high - low) * torch.sigmoid(frame_scores)
        weights = frame_mask.to(frame_scores.dtype)
        utterance_scores = (frame_scores * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return utterance_scores, frame_scores


# ----------------------------------------------------------------------------------------------------------------------
# Fusion: how the spectral, sinc and SSL streams become one frame sequence for the BLSTM. `config.fusion_mode` picks
# the module; the model and the ONNX graph both call it (frame lengths None there: unpadded clips).
# ----------------------------------------------------------------------------------------------------------------------


def ssl_frame_centres(config: MTQNetConfig) -> tuple[int, float]:
    """(stride, centre offset) in samples of the SSL encoder's frames."""
    stride, receptive_field = ssl_frame_geometry(config.ssl_config)
    return stride, (receptive_field - 1) / 2


@dataclass
class FusedFrames:
    """The frame sequence that enters the BLSTM.

    Args:
        sequence: (B, T, D) frames. lengths: (B,) valid frames per clip, or None when every frame is valid.
        times: (B, T) frame centres in seconds. sections: (B, T) `SECTION_*` ids of the frames.
    """

    sequence: torch.Tensor
    lengths: torch.Tensor | None
    times: torch.Tensor
    sections: torch.Tensor


class AlignedFusion(nn.Module):
    """`fusion_mode="aligned"`: spectral and sinc images are two channels of one CNN image (frame t of both centred
    on sample t * hop); the SSL frames, interpolated onto those frame times, are appended to each CNN frame's
    features. One frame per hop, all of section 0."""

    def __init__(self, config: MTQNetConfig):
        super().__init__()
        self.hop_length, self.sampling_rate = config.hop_length, config.sampling_rate
        self.ssl_centres = ssl_frame_centres(config) if config.ssl_config is not None else None
        self.cnn_channels = 2 if config.use_sinc else 1

    def sequence_size(self, cnn_size: int, ssl_size: int) -> int:
        return cnn_size + ssl_size

    def ssl_interpolation(
        self, num_frames: int, ssl_length: torch.Tensor, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where STFT frame t (centred on sample t * hop) falls among a clip's `ssl_length` SSL frames: the frames
        (low, high) around it and the float32 weight of `high` (positions clamped to the clip's frames).

        `ssl_length` is a 0-d tensor (not an int) so that the ONNX export can trace it from a shape.
        """
        stride, offset = self.ssl_centres
        times = torch.arange(num_frames, device=device, dtype=torch.float32) * self.hop_length
        last = ssl_length - 1
        position = torch.minimum(((times - offset) / stride).clamp(min=0), last.clamp(min=0).to(torch.float32))
        low = position.floor().long()
        high = torch.minimum(low + 1, last)
        return low, high, position - low.float()

    def resample_ssl_frames(
        self, ssl_frames: torch.Tensor, ssl_lengths: torch.Tensor | None, frame_lengths: torch.Tensor | None,
        num_frames: int,
    ) -> torch.Tensor:
        """Linearly interpolate each clip's SSL frames onto the STFT frame times (t * hop), clip by clip."""
        if ssl_lengths is None:  # unpadded clips of one length: one interpolation for the whole batch
            low, high, weight = self.ssl_interpolation(num_frames, torch._shape_as_tensor(ssl_frames)[1],
                                                       ssl_frames.device)
            weight = weight.to(ssl_frames.dtype)[:, None]
            return ssl_frames[:, low] * (1 - weight) + ssl_frames[:, high] * weight
        rows = []
        for b in range(ssl_frames.shape[0]):
            low, high, weight = self.ssl_interpolation(num_frames, ssl_lengths[b], ssl_frames.device)
            weight = weight.to(ssl_frames.dtype)[:, None]
            row = ssl_frames[b, low] * (1 - weight) + ssl_frames[b, high] * weight
            rows.append(row * (torch.arange(num_frames, device=row.device) < frame_lengths[b])[:, None])
        return torch.stack(rows)

    def forward(self, cnn: "MTQNetCNN", spectral: torch.Tensor, sinc: torch.Tensor | None, ssl: torch.Tensor | None,
                frame_lengths: torch.Tensor | None, ssl_lengths: torch.Tensor | None) -> FusedFrames:
        num_frames = spectral.shape[1]
        images = torch.stack([spectral] + ([sinc] if sinc is not None else []), dim=1)
        sequence = cnn(images, frame_mask_of(spectral, frame_lengths))
        if ssl is not None:
            aligned_ssl = self.resample_ssl_frames(ssl, ssl_lengths, frame_lengths, num_frames)
            sequence = torch.cat([sequence, aligned_ssl.to(sequence.dtype)], dim=-1)
        step = self.hop_length / self.sampling_rate
        times = (torch.arange(num_frames, device=spectral.device, dtype=torch.float32) * step).expand(
            spectral.shape[0], -1)
        return FusedFrames(sequence, frame_lengths, times, torch.zeros_like(times, dtype=torch.long))


class TimeFusion(nn.Module):
    """`fusion_mode="time"` (the MOSA-Net reference): the spectral and sinc frames are concatenated along time into
    one single-channel CNN image, and the projected SSL frames are appended along time after the CNN frames."""

    def __init__(self, config: MTQNetConfig):
        super().__init__()
        self.hop_length, self.sampling_rate = config.hop_length, config.sampling_rate
        self.ssl_centres = ssl_frame_centres(config) if config.ssl_config is not None else None
        self.cnn_channels = 1

    def sequence_size(self, cnn_size: int, ssl_size: int) -> int:
        if ssl_size and ssl_size != cnn_size:
            raise ValueError(
                f"'time' fusion concatenates CNN frames ({cnn_size}-d) and SSL frames along time, so "
                f"ssl_projection_size must equal {cnn_size}, got {ssl_size}"
            )
        return cnn_size

    def forward(self, cnn: "MTQNetCNN", spectral: torch.Tensor, sinc: torch.Tensor | None, ssl: torch.Tensor | None,
                frame_lengths: torch.Tensor | None, ssl_lengths: torch.Tensor | None) -> FusedFrames:
        batch_size, num_frames = spectral.shape[:2]
        image_sections = [(spectral, frame_lengths)] + ([(sinc, frame_lengths)] if sinc is not None else [])
        image, image_lengths = concat_along_time(image_sections)
        cnn_frames = cnn(image[:, None], frame_mask_of(image, image_lengths))
        step = self.hop_length / self.sampling_rate
        stft_times = torch.arange(num_frames, device=spectral.device, dtype=torch.float32) * step
        sequence_sections = [(cnn_frames, image_lengths)]
        time_sections = [(stft_times.expand(batch_size, -1)[..., None], frame_lengths)] * len(image_sections)
        section_ids = [(torch.full_like(spectral[..., :1], i), frame_lengths) for i in range(len(image_sections))]
        if ssl is not None:
            stride, offset = self.ssl_centres
            ssl_times = (torch.arange(ssl.shape[1], device=ssl.device) * stride + offset) / self.sampling_rate
            sequence_sections.append((ssl.to(cnn_frames.dtype), ssl_lengths))
            time_sections.append((ssl_times.float().expand(batch_size, -1)[..., None], ssl_lengths))
            section_ids.append((torch.full_like(ssl[..., :1], SECTION_SSL), ssl_lengths))
        sequence, sequence_lengths = concat_along_time(sequence_sections)
        times = concat_along_time(time_sections)[0][..., 0]
        sections = concat_along_time(section_ids)[0][..., 0].long()
        return FusedFrames(sequence, sequence_lengths, times, sections)


FUSION_MODULES = {"aligned": AlignedFusion, "time": TimeFusion}


# ----------------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------------


class MTQNetPreTrainedModel(PreTrainedModel):
    config_class = MTQNetConfig
    config: MTQNetConfig
    base_model_prefix = "mtqnet"
    main_input_name = "input_values"
    supports_gradient_checkpointing = True
    _auto_class = "AutoModel"
    # Loaded in bfloat16 / float16 (`from_pretrained(..., dtype=...)`), these stay float32: the sinc band edges (Hz)
    # and the score heads with their pooling are tiny in compute and sensitive in precision.
    _keep_in_fp32_modules_strict = ["sinc", "heads"]

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype: the CNN's. (The first parameter, a sinc band edge, stays float32 in a bfloat16 model;
        the parameters keep their order so that optimizer states of older checkpoints still line up.)"""
        trunk = self if isinstance(self, MTQNetModel) else self.mtqnet
        return trunk.cnn.convs[0].weight.dtype

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, SincFilterbank):
            low, band = module.mel_initial_bands()
            init.copy_(module.low_hz_, low)
            init.copy_(module.band_hz_, band)
        elif isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):
            bound = 1.0 / math.sqrt(module.hidden_size)
            for parameter in module.parameters():
                init.uniform_(parameter, -bound, bound)
        elif isinstance(module, AttentionScoreHead):
            init.zeros_(module.attention_bias)
            # Start linear heads at the middle of their range (e.g. MOS 3.0) rather than 0.
            middle = sum(module.value_range) / 2 if module.activation == "linear" and module.value_range else 0.0
            init.constant_(module.score.bias, middle)
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, MTQNetModel) and module.ssl_layer_weights is not None:
            init.zeros_(module.ssl_layer_weights)

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """Save weights (safetensors), config with `auto_map`, and every code file, so that the folder loads with
        `trust_remote_code=True` where this package is not installed."""
        super().save_pretrained(save_directory, *args, **kwargs)
        package_dir = os.path.dirname(os.path.abspath(__file__))
        for name in CODE_FILES:
            shutil.copyfile(os.path.join(package_dir, name), os.path.join(save_directory, name))


def build_ssl_encoder(ssl_config: Any) -> nn.Module:
    """The SSL encoder `ssl_config` describes: the Distill-MOS encoder for its model type, else the transformers
    model `AutoModel.from_config` builds (WavLM, HuBERT, wav2vec2...). Chosen by model type rather than through the
    Auto registry: a folder loaded with remote code defines its own copy of the encoder's config class."""
    if getattr(ssl_config, "model_type", None) == DistillMosEncoder.config_class.model_type:
        return DistillMosEncoder(ssl_config)
    return AutoModel.from_config(ssl_config)


CODE_FILES = (
    "configuration_mtqnet.py", "feature_extraction_mtqnet.py", "modeling_mtqnet.py", "pipeline_mtqnet.py",
    "wavlm_attention.py", "configuration_distillmos.py", "modeling_distillmos.py",
)


class MTQNetModel(MTQNetPreTrainedModel):
    """The MOSA-Net trunk: spectral + sinc images through the CNN, an SSL encoder, fusion, BLSTM and a dense layer."""

    def __init__(self, config: MTQNetConfig):
        super().__init__(config)
        self.spectral = SpectralBranch(config)
        self.sinc = SincFilterbank(config) if config.use_sinc else None
        self.fusion = FUSION_MODULES[config.fusion_mode](config)
        self.cnn = MTQNetCNN(config, in_channels=self.fusion.cnn_channels)
        self.ssl_encoder = build_ssl_encoder(config.ssl_config) if config.ssl_config is not None else None
        if self.ssl_encoder is not None:
            # A WavLM encoder's attention in memory linear in the clip's length (same weights, same outputs).
            use_blockwise_wavlm_attention(self.ssl_encoder)
        self.ssl_layer_weights = None
        ssl_size = 0
        if self.ssl_encoder is not None:
            ssl_size = config.ssl_projection_size
            self.ssl_projection = nn.Linear(config.ssl_config.hidden_size, ssl_size)
            if config.ssl_layer == "weighted":
                self.ssl_layer_weights = nn.Parameter(torch.zeros(config.ssl_config.num_hidden_layers + 1))
            self._freeze_ssl_parameters()
        lstm_input = self.fusion.sequence_size(self.cnn.output_size, ssl_size)
        self.blstm = nn.LSTM(lstm_input, config.lstm_hidden_size, batch_first=True, bidirectional=True)
        self.dense = nn.Linear(2 * config.lstm_hidden_size, config.dense_size)
        self.dropout = nn.Dropout(config.dropout)
        self.post_init()

    # -- SSL encoder -----------------------------------------------------------------------------------------------

    def _freeze_ssl_parameters(self) -> None:
        if self.config.freeze_ssl:
            self.ssl_encoder.requires_grad_(False)
        elif self.config.freeze_ssl_feature_encoder and hasattr(self.ssl_encoder, "freeze_feature_encoder"):
            self.ssl_encoder.freeze_feature_encoder()

    def train(self, mode: bool = True) -> "MTQNetModel":
        super().train(mode)
        if self.ssl_encoder is not None and self.config.freeze_ssl:
            self.ssl_encoder.eval()  # a frozen encoder never runs dropout / SpecAugment
        return self

    def load_ssl_weights(self, name_or_path: str | os.PathLike, **kwargs: Any) -> None:
        """Load pretrained SSL weights (a hub name such as "microsoft/wavlm-base-plus" or a local folder) into the
        encoder built from `config.ssl_config`. Kept out of `__init__` so that `from_pretrained` of MTQ-Net works."""
        if self.ssl_encoder is None:
            raise ValueError("This model has no SSL encoder (config.ssl_config is None)")
        pretrained = type(self.ssl_encoder).from_pretrained(name_or_path, **kwargs)
        missing, unexpected = self.ssl_encoder.load_state_dict(pretrained.state_dict(), strict=False)
        if missing:
            raise ValueError(
                f"{name_or_path} does not match config.ssl_config: {len(missing)} missing weights (e.g. {missing[:3]}). "
                "Build the config with ssl_config=AutoConfig.from_pretrained(name_or_path)."
            )
        self._freeze_ssl_parameters()

    def _uses_group_norm(self) -> bool:
        return getattr(self.config.ssl_config, "feat_extract_norm", "layer") == "group"

    def _ssl_hidden(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        want_all = self.config.ssl_layer != "last"
        input_values = input_values.to(self.ssl_encoder.dtype)  # a bfloat16 encoder takes bfloat16 waveforms
        outputs = self.ssl_encoder(input_values, attention_mask=attention_mask, output_hidden_states=want_all)
        if self.config.ssl_layer == "last":
            return outputs.last_hidden_state
        if self.config.ssl_layer == "weighted":
            stacked = torch.stack(outputs.hidden_states, dim=0)
            weights = torch.softmax(self.ssl_layer_weights, dim=0).to(stacked.dtype)
            return (stacked * weights[:, None, None, None]).sum(0)
        return outputs.hidden_states[self.config.ssl_layer]

    def ssl_hidden_states(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The SSL encoder's chosen layer for every clip -> (B, T_ssl, hidden), padded with zeros."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_ssl):
            if self._uses_group_norm():
                # Group norm over time would include the batch's padding: encode each clip at its own length.
                rows = [self._ssl_hidden(waveforms[b : b + 1, : int(n)], None)[0] for b, n in enumerate(lengths)]
                return pad_sequence(rows, batch_first=True)
            mask = lengths_to_mask(lengths, waveforms.shape[1]).long()
            return self._ssl_hidden(waveforms, mask)

    @property
    def can_cache_ssl_features(self) -> bool:
        """A frozen encoder's chosen layer never changes, so it can be computed once per clip and reused."""
        return self.ssl_encoder is not None and self.config.freeze_ssl and self.config.ssl_layer != "weighted"

    def encode_ssl(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None, cached: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """SSL frames projected to `ssl_projection_size` with ReLU -> (B, T_ssl, P), frame lengths.

        `lengths` None: unpadded clips (the ONNX graph), every frame valid, lengths None.
        `cached`: precomputed `ssl_hidden_states` (a frozen encoder's features), which skips the encoder.
        """
        if lengths is None:
            return self.project_ssl(self._ssl_hidden(waveforms, None)), None
        ssl_lengths = self.ssl_encoder._get_feat_extract_output_lengths(lengths)
        if cached is not None:
            if not self.can_cache_ssl_features:
                raise ValueError("Cached SSL features need a frozen encoder (freeze_ssl) and a fixed ssl_layer")
            hidden = cached.to(self.ssl_projection.weight.dtype)
        else:
            hidden = self.ssl_hidden_states(waveforms, lengths)
        hidden = hidden[:, : int(ssl_lengths.max())]
        projected = self.project_ssl(hidden)
        return projected * lengths_to_mask(ssl_lengths, projected.shape[1])[..., None], ssl_lengths

    def project_ssl(self, hidden: torch.Tensor) -> torch.Tensor:
        """The per-frame Dense(ssl_projection_size, ReLU) after the SSL encoder (whose output may be float32 in a
        bfloat16 model: the Distill-MOS encoder stays float32)."""
        return F.relu(self.ssl_projection(hidden.to(self.ssl_projection.weight.dtype)))

    def ssl_frame_geometry(self) -> tuple[int, float]:
        """(stride, centre offset) in samples of the SSL encoder's frames."""
        return ssl_frame_centres(self.config)

    def encode_frames(self, spectral: torch.Tensor, sinc: torch.Tensor | None, ssl: torch.Tensor | None,
                      frame_lengths: torch.Tensor | None, ssl_lengths: torch.Tensor | None) -> MTQNetModelOutput:
        """Fusion (`self.fusion`), BLSTM and dense layer: the trunk after its three input streams.

        Shared by `forward` and the ONNX graph. Lengths None means unpadded clips of one length: every frame is
        valid and the BLSTM runs without packing (identical for such clips).
        """
        fused = self.fusion(self.cnn, spectral, sinc, ssl, frame_lengths, ssl_lengths)
        if fused.lengths is None:
            recurrent, _ = self.blstm(fused.sequence)
        else:
            packed = pack_padded_sequence(fused.sequence, fused.lengths.cpu(), batch_first=True, enforce_sorted=False)
            recurrent, _ = self.blstm(packed)
            recurrent, _ = pad_packed_sequence(recurrent, batch_first=True, total_length=fused.sequence.shape[1])
        frame_mask = frame_mask_of(fused.sequence, fused.lengths)
        hidden = self.dropout(F.relu(self.dense(recurrent)))
        hidden = hidden * frame_mask[..., None].to(hidden.dtype)
        return MTQNetModelOutput(
            last_hidden_state=hidden, frame_mask=frame_mask, frame_times=fused.times, frame_sections=fused.sections
        )

    # -- forward ----------------------------------------------------------------------------------------------------

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        ssl_hidden_states: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MTQNetModelOutput:
        """Args:
        input_values: (B, N) waveforms at `config.sampling_rate`, zero-padded (the feature extractor's output).
        attention_mask: (B, N), 1 for real samples; None means every sample is real.
        ssl_hidden_states: optional (B, T_ssl, hidden) cached features of a frozen SSL encoder (see `data.py`).
        """
        if input_values.dim() != 2:
            raise ValueError(f"input_values must be (batch, samples), got shape {tuple(input_values.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_values, dtype=torch.long)
        lengths = attention_mask.long().sum(-1)
        if int(lengths.min()) < self.config.min_input_samples:
            raise ValueError(
                f"A clip has {int(lengths.min())} samples; at least {self.config.min_input_samples} are needed"
            )
        limit_s = self.config.one_pass_limit_s
        if int(lengths.max()) > limit_s * self.config.sampling_rate:
            raise ValueError(
                f"A clip of {int(lengths.max()) / self.config.sampling_rate:.2f} s is longer than this model scores "
                f"in one pass in bounded memory ({limit_s:g} s, config.one_pass_limit_s); score it in windows: the "
                "speech-quality-assessment pipeline and `mtqnet score` window long audio by default"
            )
        waveforms = (input_values * attention_mask.to(input_values.dtype))[:, : int(lengths.max())]
        frame_lengths = stft_frame_count(lengths, self.config.hop_length)
        spectral = self.spectral(waveforms, lengths)
        sinc = self.sinc(waveforms, spectral.shape[1]) if self.sinc is not None else None
        ssl, ssl_lengths = (
            self.encode_ssl(waveforms, lengths, ssl_hidden_states) if self.ssl_encoder is not None else (None, None)
        )
        return self.encode_frames(spectral, sinc, ssl, frame_lengths, ssl_lengths)


HEAD_PREFIXES = ("heads.", "auxiliary_heads.")


def head_names(weight_names: Any) -> list[str]:
    """The score heads ("heads.s_mos", "auxiliary_heads.pesq", ...) that some weight names belong to."""
    found = set()
    for name in weight_names:
        for prefix in HEAD_PREFIXES:
            if name.startswith(prefix):
                found.add(prefix + name[len(prefix):].split(".", 1)[0])
    return sorted(found)


def check_heads_loaded(loading_info: dict[str, Any], source: Any) -> None:
    """Refuse a load whose config and saved weights disagree about the score heads (see `from_pretrained`)."""
    untrained = head_names(loading_info.get("missing_keys") or ())
    dropped = head_names(loading_info.get("unexpected_keys") or ())
    mismatched = head_names(key[0] if isinstance(key, (tuple, list)) else key
                            for key in loading_info.get("mismatched_keys") or ())
    if untrained or dropped or mismatched:
        problems = []
        if untrained:
            problems.append(f"the config names heads with no saved weights ({', '.join(untrained)}): they would "
                            "score at random")
        if dropped:
            problems.append(f"the weights hold heads the config does not name ({', '.join(dropped)}): they would be "
                            "dropped")
        if mismatched:
            problems.append(f"heads of another size ({', '.join(mismatched)})")
        raise ValueError(f"{source}: the config's target_names / auxiliary_target_names do not match the saved heads: "
                         f"{'; '.join(problems)}. Fix config.json, or pass ignore_mismatched_sizes=True to change the "
                         "heads on purpose (new heads start untrained)")


class MTQNetForSpeechQualityAssessment(MTQNetPreTrainedModel):
    """MTQ-Net: the trunk plus one attention head per primary target (S-MOS, N-MOS, G-MOS by default) and, for
    training with pseudo labels, one per auxiliary target (PESQ, STOI, SDI). `logits` are the primary utterance
    scores in `config.target_names` order; no softmax anywhere (`problem_type="regression"`)."""

    def __init__(self, config: MTQNetConfig):
        super().__init__(config)
        self.mtqnet = MTQNetModel(config)
        self.heads = self._build_heads(config.target_names, config.target_activations, config.target_ranges)
        self.auxiliary_heads = self._build_heads(
            config.auxiliary_target_names, config.auxiliary_target_activations, config.auxiliary_target_ranges
        )
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any):
        """`PreTrainedModel.from_pretrained`, strict about the score heads: a folder whose config names heads the
        weights do not hold (they would be random: a new score on every load), or whose weights hold heads the config
        does not name (they would be dropped), is refused with a ValueError naming them. To change the heads on
        purpose, pass `ignore_mismatched_sizes=True` (new heads start untrained; train them before use)."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args, output_loading_info=True,
                                              **kwargs)
        if not kwargs.get("ignore_mismatched_sizes", False):
            check_heads_loaded(info, pretrained_model_name_or_path)
        return (model, info) if want_info else model

    def _build_heads(self, names: list[str], activations: list[str], ranges: list) -> nn.ModuleDict:
        return nn.ModuleDict(
            {
                name: AttentionScoreHead(self.config.dense_size, activation, value_range)
                for name, activation, value_range in zip(names, activations, ranges)
            }
        )

    def load_ssl_weights(self, name_or_path: str | os.PathLike, **kwargs: Any) -> None:
        """See [`MTQNetModel.load_ssl_weights`]."""
        self.mtqnet.load_ssl_weights(name_or_path, **kwargs)

    def load_trunk_from(self, teacher: "str | os.PathLike | MTQNetForSpeechQualityAssessment") -> None:
        """Knowledge transfer: copy a teacher's trunk (sinc, CNN, SSL encoder and projection, BLSTM, dense) into this
        model, whose heads may differ (e.g. a MOSA-Net teacher with PESQ/STOI/SDI heads -> MTQ-Net with S/N/G-MOS).

        Args:
            teacher: a saved MTQ-Net / MOSA-Net folder (or Hub id), or a loaded model.
        Raises:
            ValueError: the two trunks are not built alike (different preset, fusion or SSL encoder).
        """
        if not isinstance(teacher, MTQNetPreTrainedModel):
            teacher = MTQNetForSpeechQualityAssessment.from_pretrained(teacher)
        source = teacher.mtqnet if isinstance(teacher, MTQNetForSpeechQualityAssessment) else teacher
        ours, theirs = self.mtqnet.state_dict(), source.state_dict()
        mismatched = sorted(
            set(ours) ^ set(theirs) | {k for k in set(ours) & set(theirs) if ours[k].shape != theirs[k].shape}
        )
        if mismatched:
            raise ValueError(
                f"The teacher's trunk does not match this model's ({len(mismatched)} differing weights, e.g. "
                f"{mismatched[:3]}); build the student with the teacher's preset, fusion mode and SSL encoder"
            )
        self.mtqnet.load_state_dict(theirs)

    def drop_auxiliary_heads(self) -> "MTQNetForSpeechQualityAssessment":
        """Remove the pseudo-label heads (in place) for inference; the saved checkpoint then holds none. Returns self."""
        self.auxiliary_heads = nn.ModuleDict()
        if self.config.auxiliary_target_names:
            self.config.trained_auxiliary_target_names = list(self.config.auxiliary_target_names)
        self.config.auxiliary_target_names = []
        self.config.auxiliary_target_activations = []
        self.config.auxiliary_target_ranges = []
        return self

    @staticmethod
    def run_heads(heads: nn.ModuleDict, trunk: MTQNetModelOutput) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Utterance scores (B, K) and frame scores (B, T, K) of `heads` on the trunk's output; (None, None) when
        there are no heads. Used by `forward` and the ONNX graph."""
        if len(heads) == 0:
            return None, None
        results = [head(trunk.last_hidden_state, trunk.frame_mask) for head in heads.values()]
        return torch.stack([r[0] for r in results], dim=-1), torch.stack([r[1] for r in results], dim=-1)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pseudo_labels: torch.Tensor | None = None,
        ssl_hidden_states: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SpeechQualityOutput:
        """Args:
        input_values, attention_mask, ssl_hidden_states: as [`MTQNetModel.forward`].
        labels: optional (B, n_primary) primary labels (NaN = missing) -> `loss`.
        pseudo_labels: optional (B, n_auxiliary) pseudo labels (NaN = missing) -> `loss`.
        """
        trunk = self.mtqnet(input_values, attention_mask=attention_mask, ssl_hidden_states=ssl_hidden_states)
        logits, frame_scores = self.run_heads(self.heads, trunk)
        auxiliary_logits, auxiliary_frame_scores = self.run_heads(self.auxiliary_heads, trunk)
        outputs = SpeechQualityOutput(
            logits=logits,
            frame_scores=frame_scores,
            frame_mask=trunk.frame_mask,
            auxiliary_logits=auxiliary_logits,
            auxiliary_frame_scores=auxiliary_frame_scores,
            frame_times=trunk.frame_times,
            frame_sections=trunk.frame_sections,
        )
        if labels is not None or pseudo_labels is not None:
            outputs.loss, _ = speech_quality_objective(outputs, labels, pseudo_labels, self.config)
        return outputs


__all__ = [
    "MTQNetModel",
    "MTQNetForSpeechQualityAssessment",
    "MTQNetPreTrainedModel",
    "MTQNetModelOutput",
    "SpeechQualityOutput",
    "speech_quality_objective",
    "target_loss_sums",
    "pointwise_loss",
    "SECTION_NAMES",
]
