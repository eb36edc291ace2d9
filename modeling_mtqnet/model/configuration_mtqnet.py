"""MTQ-Net configuration.

MTQ-Net (Zezario et al., ICASSP 2024) predicts 3QUEST-style S-MOS / N-MOS / G-MOS from the degraded signal alone.
Its trunk is MOSA-Net: a linear spectrogram and a learnable sinc filterbank feed a 12-layer CNN, a self-supervised
speech encoder (WavLM / HuBERT / wav2vec2) adds a second stream, and a BLSTM + dense layer feed one attention head per
target. Training adds auxiliary heads for pseudo labels (PESQ, STOI, SDI) that are dropped at inference.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_distillmos import DistillMosEncoderConfig

PRIMARY_TARGETS = ("s_mos", "n_mos", "g_mos")
AUXILIARY_TARGETS = ("pesq", "stoi", "sdi")
ACTIVATIONS = ("linear", "sigmoid")
FUSION_MODES = ("time", "aligned")
LOSS_TYPES = ("huber", "mse", "mae")

# (activation, [low, high]) for the target names this package knows. Unknown names default to linear, no range.
KNOWN_TARGETS: dict[str, tuple[str, list[float] | None]] = {
    "s_mos": ("linear", [1.0, 5.0]),
    "n_mos": ("linear", [1.0, 5.0]),
    "g_mos": ("linear", [1.0, 5.0]),
    "mos": ("linear", [1.0, 5.0]),
    "pesq": ("linear", [-0.5, 4.644]),
    "stoi": ("sigmoid", [0.0, 1.0]),
    # SDI of two unit-variance signals is 2 - 2 * correlation, so it lies in [0, 4].
    "sdi": ("linear", [0.0, 4.0]),
}

# An SSL encoder's self-attention holds (heads x frames^2) scores; transformers' WavLM on CPU peaks at about 26 bytes
# per score in float32 inference (measured: 6.5 copies of 4 bytes). One pass of a clip may spend at most this budget on
# them; the trunk and heads need memory linear in the clip (about 3 MB per second for the `small` preset). This model
# runs a WavLM encoder's attention block-wise (wavlm_attention.py, memory linear in the clip) and keeps the limit all
# the same: its time grows with the square of the clip, and long audio is scored in windows like the training clips.
SSL_ATTENTION_BYTES_PER_SCORE = 26
ONE_PASS_ATTENTION_BUDGET_BYTES = 2 * 1024**3

# Auto classes written into config.json's `auto_map`, so that a saved folder loads with `trust_remote_code=True`.
AUTO_MAP = {
    "AutoConfig": "configuration_mtqnet.MTQNetConfig",
    "AutoModel": "modeling_mtqnet.MTQNetForSpeechQualityAssessment",
    "AutoModelForAudioClassification": "modeling_mtqnet.MTQNetForSpeechQualityAssessment",
    "AutoFeatureExtractor": "feature_extraction_mtqnet.MTQNetFeatureExtractor",
}


# The pipeline's entry for `config.custom_pipelines`. Not written by default: transformers then insists on
# `trust_remote_code=True` for that task even where this package is installed. A Hub upload may add it.
CUSTOM_PIPELINES = {
    "speech-quality-assessment": {
        "impl": "pipeline_mtqnet.SpeechQualityAssessmentPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "type": "audio",
    }
}


def tiny_ssl_config(norm: str = "group") -> dict[str, Any]:
    """A 2-layer, 32-wide WavLM config (random weights) for tests and the `tiny` preset.

    Args:
        norm: `"group"` (as wavlm-base / wav2vec2-base: group norm over time in the first conv) or `"layer"`
            (as the large models: per-frame layer norm).
    """
    return {
        "model_type": "wavlm",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_dim": [16, 16, 16],
        "conv_stride": [5, 4, 4],
        "conv_kernel": [10, 4, 4],
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
        "num_buckets": 16,
        "max_bucket_distance": 40,
        "feat_extract_norm": norm,
        "do_stable_layer_norm": norm == "layer",
        "mask_time_prob": 0.0,
        "layerdrop": 0.0,
    }


# The `small` trunk: narrower CNN and BLSTM than the reference, aligned fusion; fast on a CPU.
SMALL_TRUNK: dict[str, Any] = {
    "cnn_channels": [8, 16, 32, 32],
    "lstm_hidden_size": 64,
    "dense_size": 64,
    "ssl_projection_size": 128,
    "sinc_num_filters": 257,
    "fusion_mode": "aligned",
}

PRESETS: dict[str, dict[str, Any]] = {
    # The shipped models' trunk: `small`'s CNN and BLSTM with the pretrained Distill-MOS encoder as SSL branch, frozen
    # (its weights: `load_ssl_weights("distillmos")`, from the folder `mtqnet build-encoder` makes).
    "small-distillmos": {**SMALL_TRUNK, "ssl_config": {"model_type": DistillMosEncoderConfig.model_type},
                         "freeze_ssl": True},
    # The sizes of the MOSA-Net reference, with a WavLM-base-sized encoder (random weights until
    # `load_ssl_weights("microsoft/wavlm-base-plus")`).
    "mosa-net": {
        "ssl_config": {"model_type": "wavlm"},
        "fusion_mode": "time",
    },
    # The `small` trunk with no SSL encoder unless one is passed.
    "small": {**SMALL_TRUNK, "ssl_config": None},
    # For tests: seconds to run, with a 2-layer WavLM so that every branch is exercised.
    "tiny": {
        "ssl_config": tiny_ssl_config(),
        "cnn_channels": [2, 4, 4, 4],
        "lstm_hidden_size": 8,
        "dense_size": 8,
        "ssl_projection_size": 16,
        "fusion_mode": "aligned",
    },
}


class MTQNetConfig(PreTrainedConfig):
    r"""Configuration of an MTQ-Net speech quality model ([`MTQNetForSpeechQualityAssessment`]).

    Presets: `MTQNetConfig.from_preset("mosa-net" | "small" | "small-distillmos" | "tiny", **overrides)`.

    Args:
        sampling_rate (`int`, defaults to 16000):
            Rate the model works at; the feature extractor resamples everything else to it.
        target_names (`list[str]`, defaults to `["s_mos", "n_mos", "g_mos"]`):
            Primary targets, in output order. Any MOS-like set works (P.835 `sig/bak/ovrl`, a single `mos`).
            `id2label` is derived from it.
        target_activations (`list[str]`, *optional*):
            Per primary target, `"linear"` or `"sigmoid"` (sigmoid is scaled to the target's range). Defaults per
            known name (see `KNOWN_TARGETS`), else `"linear"`.
        target_ranges (`list[list[float] | None]`, *optional*):
            Per primary target, the `[low, high]` range of valid labels (used to scale sigmoid outputs and to
            reject out-of-range labels in training). Defaults per known name, else `None` (unbounded).
        auxiliary_target_names (`list[str]`, defaults to `["pesq", "stoi", "sdi"]`):
            Pseudo-label targets: extra heads trained alongside the primary ones (multi-task pseudo-label
            learning) and dropped at inference by [`~MTQNetForSpeechQualityAssessment.drop_auxiliary_heads`].
            An empty list gives a model with primary heads only (a teacher is such a model whose primary targets
            are `pesq, stoi, sdi`).
        auxiliary_target_activations (`list[str]`, *optional*): as `target_activations`, for the auxiliary targets.
        auxiliary_target_ranges (`list[list[float] | None]`, *optional*): as `target_ranges`, for the auxiliary ones.
        trained_auxiliary_target_names (`list[str]`, *optional*): the auxiliary targets a model was trained with,
            recorded by `drop_auxiliary_heads` (which empties `auxiliary_target_names`) for model cards.
        n_fft (`int`, defaults to 512): STFT size of the spectral branch.
        hop_length (`int`, defaults to 256): STFT hop; also the frame step of the sinc branch and of `"aligned"` fusion.
        win_length (`int`, defaults to 512): STFT window length (Hamming).
        use_sinc (`bool`, defaults to `True`): whether the learnable sinc filterbank branch exists.
        sinc_num_filters (`int`, defaults to 257): number of band-pass filters (= spectral bins, so both images stack).
        sinc_kernel_size (`int`, defaults to 251): taps per filter (odd).
        sinc_min_low_hz (`float`, defaults to 50.0): minimum low cut-off of every band.
        sinc_min_band_hz (`float`, defaults to 50.0): minimum band width.
        sinc_trainable (`bool`, defaults to `True`): train the band edges (the Keras reference never did; the paper
            calls the filterbank learnable).
        ssl_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of a transformers audio encoder (WavLM, HuBERT, wav2vec2...) or of the Distill-MOS encoder
            (`DistillMosEncoderConfig`, model type `distillmos_encoder`), built with `AutoModel.from_config`;
            `None` for no SSL branch. Pretrained weights are loaded separately with
            [`~MTQNetModel.load_ssl_weights`].
        ssl_layer (`str` or `int`, defaults to `"last"`):
            Which encoder output feeds the model: `"last"`, an index into the hidden states (0 = the projected conv
            features), or `"weighted"` (a learnable softmax-weighted sum of all hidden states).
        freeze_ssl (`bool`, defaults to `False`):
            Keep the SSL encoder fixed (no gradients, always in eval mode). The paper's best system fine-tunes it.
        freeze_ssl_feature_encoder (`bool`, defaults to `True`):
            When fine-tuning, keep the encoder's convolutional waveform front-end fixed (usual practice).
        ssl_projection_size (`int`, defaults to 512): width of the per-frame Dense+ReLU after the SSL encoder.
        fusion_mode (`str`, defaults to `"time"`):
            `"time"`: the reference's fusion. Spectral and sinc frames are concatenated along time into one
            single-channel image for the CNN; CNN frames and SSL frames are concatenated along time again before
            the BLSTM. Frame scores then cover three sections (spectral, sinc, SSL).
            `"aligned"`: spectral and sinc are the two channels of one image; SSL frames are linearly resampled to
            the STFT frame rate and concatenated as features. Shorter sequences, one frame per 16 ms.
        cnn_channels (`list[int]`, defaults to `[16, 32, 64, 128]`): channels of the four conv blocks.
        cnn_convs_per_block (`int`, defaults to 3): 3x3 convs per block; the last one strides the frequency axis.
        cnn_frequency_stride (`int`, defaults to 3): frequency stride of each block's last conv (257->86->29->10->4).
        lstm_hidden_size (`int`, defaults to 128): BLSTM units per direction.
        dense_size (`int`, defaults to 128): width of the Dense+ReLU after the BLSTM (and of the attention heads).
        dropout (`float`, defaults to 0.3): dropout after that dense layer.
        loss_type (`str`, defaults to `"huber"`): `"huber"`, `"mse"` or `"mae"` (the paper's ablation).
        huber_delta (`float`, defaults to 1.0): Huber threshold (paper: 1.0 best overall, 0.75 best for S-MOS).
        frame_loss_weight (`float`, defaults to 1.0): alpha, the weight of the frame-level term of every target.
        pseudo_label_loss_weight (`float`, defaults to 1.0): weight of L_semi (the auxiliary targets) in the objective.
        max_duration_s (`float`, defaults to 600.0): longest clip accepted in one piece; with an SSL encoder the
            limit is lowered to what its self-attention fits in bounded memory (`one_pass_limit_s`). Longer audio is
            scored in windows (the pipeline and `mtqnet score` do this by default).
        initializer_range (`float`, defaults to 0.02): std of the normal init of linear layers.
    """

    model_type = "mtqnet"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "ssl_config": SubConfigSpec(config_class=AutoConfig, model_type="wavlm", optional=True),
    }

    sampling_rate: int = 16000
    target_names: list[str] | tuple[str, ...] = PRIMARY_TARGETS
    target_activations: list[str] | tuple[str, ...] | None = None
    target_ranges: list | tuple | None = None
    auxiliary_target_names: list[str] | tuple[str, ...] = AUXILIARY_TARGETS
    auxiliary_target_activations: list[str] | tuple[str, ...] | None = None
    auxiliary_target_ranges: list | tuple | None = None
    trained_auxiliary_target_names: list[str] | tuple[str, ...] | None = None
    n_fft: int = 512
    hop_length: int = 256
    win_length: int = 512
    use_sinc: bool = True
    sinc_num_filters: int = 257
    sinc_kernel_size: int = 251
    sinc_min_low_hz: float | int = 50.0
    sinc_min_band_hz: float | int = 50.0
    sinc_trainable: bool = True
    ssl_config: dict | PreTrainedConfig | None = None
    ssl_layer: str | int = "last"
    freeze_ssl: bool = False
    freeze_ssl_feature_encoder: bool = True
    ssl_projection_size: int = 512
    fusion_mode: str = "time"
    cnn_channels: list[int] | tuple[int, ...] = (16, 32, 64, 128)
    cnn_convs_per_block: int = 3
    cnn_frequency_stride: int = 3
    lstm_hidden_size: int = 128
    dense_size: int = 128
    dropout: float | int = 0.3
    loss_type: str = "huber"
    huber_delta: float | int = 1.0
    frame_loss_weight: float | int = 1.0
    pseudo_label_loss_weight: float | int = 1.0
    max_duration_s: float | int = 600.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        kwargs.setdefault("problem_type", "regression")
        super().__post_init__(**kwargs)
        self.problem_type = "regression"
        self.target_names = list(self.target_names)
        self.auxiliary_target_names = list(self.auxiliary_target_names)
        self.cnn_channels = list(self.cnn_channels)
        self.target_activations, self.target_ranges = _resolve_heads(
            self.target_names, self.target_activations, self.target_ranges, "target"
        )
        self.auxiliary_target_activations, self.auxiliary_target_ranges = _resolve_heads(
            self.auxiliary_target_names, self.auxiliary_target_activations, self.auxiliary_target_ranges,
            "auxiliary_target",
        )
        self.id2label = dict(enumerate(self.target_names))
        self.label2id = {name: index for index, name in self.id2label.items()}
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(AUTO_MAP)
        self._check_fields()

    def _check_fields(self) -> None:
        """Reject, at construction, settings the model cannot be built from."""
        if not self.target_names:
            raise ValueError("MTQNetConfig needs at least one primary target in `target_names`.")
        duplicated = set(self.target_names) & set(self.auxiliary_target_names)
        if duplicated or len(set(self.target_names)) != len(self.target_names):
            raise ValueError(f"Target names must be unique across primary and auxiliary targets: {sorted(duplicated)}")
        if self.fusion_mode not in FUSION_MODES:
            raise ValueError(f"fusion_mode must be one of {FUSION_MODES}, got {self.fusion_mode!r}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if not (self.ssl_layer in ("last", "weighted") or isinstance(self.ssl_layer, int)):
            raise ValueError(f"ssl_layer must be 'last', 'weighted' or an int, got {self.ssl_layer!r}")
        if self.use_sinc and self.sinc_kernel_size % 2 == 0:
            raise ValueError(f"sinc_kernel_size must be odd, got {self.sinc_kernel_size}")
        if self.use_sinc and self.sinc_num_filters != self.n_fft // 2 + 1:
            raise ValueError(
                f"sinc_num_filters ({self.sinc_num_filters}) must equal n_fft // 2 + 1 ({self.n_fft // 2 + 1}): "
                "the sinc and spectral images share the CNN."
            )
        if self.huber_delta <= 0:
            raise ValueError(f"huber_delta must be positive, got {self.huber_delta}")

    @property
    def num_frequency_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def cnn_output_frequencies(self) -> int:
        """Frequency bins left after the strided convs (257 -> 86 -> 29 -> 10 -> 4 in the reference)."""
        size = self.num_frequency_bins
        for _ in self.cnn_channels:
            size = math.floor((size + 2 - 3) / self.cnn_frequency_stride) + 1
        return size

    @property
    def min_input_samples(self) -> int:
        """Shortest clip (in samples) that gives at least one frame in every branch."""
        minimum = self.n_fft // 2 + 1  # the centred STFT reflect-pads by n_fft // 2
        if self.ssl_config is not None:
            minimum = max(minimum, ssl_frame_geometry(self.ssl_config)[1])
        return minimum

    @property
    def one_pass_limit_s(self) -> float:
        """Longest clip (seconds) scored in one pass in bounded memory: `max_duration_s`, lowered for an SSL encoder
        to the length whose self-attention fits `ONE_PASS_ATTENTION_BUDGET_BYTES` (WavLM-base: 52 s). Without an
        SSL encoder, or with one that attends within fixed windows (Distill-MOS), every layer's memory grows linearly
        with the clip."""
        limit = float(self.max_duration_s)
        if self.ssl_config is not None and getattr(self.ssl_config, "attention_spans_clip", True):
            stride = ssl_frame_geometry(self.ssl_config)[0]
            heads = int(getattr(self.ssl_config, "num_attention_heads", 1) or 1)
            frames = math.sqrt(ONE_PASS_ATTENTION_BUDGET_BYTES / (SSL_ATTENTION_BYTES_PER_SCORE * heads))
            limit = min(limit, math.floor(frames * stride / self.sampling_rate))
        return limit

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "MTQNetConfig":
        """Build a config from a named preset (`"mosa-net"`, `"small"`, `"small-distillmos"`, `"tiny"`), with any field
        overridden."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        values = {**PRESETS[name], **overrides}
        return cls(**values)


def _resolve_heads(
    names: list[str], activations: Any, ranges: Any, field_name: str
) -> tuple[list[str], list[list[float] | None]]:
    """Fill per-target activations and ranges from `KNOWN_TARGETS` and check their lengths and values."""
    default_activations = [KNOWN_TARGETS.get(name, ("linear", None))[0] for name in names]
    default_ranges = [KNOWN_TARGETS.get(name, ("linear", None))[1] for name in names]
    activations = list(activations) if activations is not None else default_activations
    ranges = [list(r) if r is not None else None for r in ranges] if ranges is not None else default_ranges
    if len(activations) != len(names) or len(ranges) != len(names):
        raise ValueError(
            f"{field_name}_activations and {field_name}_ranges need one entry per name in {names}; "
            f"got {len(activations)} and {len(ranges)}"
        )
    for name, activation, value_range in zip(names, activations, ranges):
        if activation not in ACTIVATIONS:
            raise ValueError(f"Activation of {name!r} must be one of {ACTIVATIONS}, got {activation!r}")
        if activation == "sigmoid" and value_range is None:
            raise ValueError(f"Target {name!r} uses a sigmoid output and needs a [low, high] range")
        if value_range is not None and (len(value_range) != 2 or not value_range[0] < value_range[1]):
            raise ValueError(f"Range of {name!r} must be [low, high] with low < high, got {value_range}")
    return activations, ranges


def ssl_frame_geometry(ssl_config: Any) -> tuple[int, int]:
    """(stride, receptive field) in samples of one SSL frame, from the conv front-end's kernels and strides.

    wav2vec2 / WavLM / HuBERT: (320, 400), i.e. 20 ms frames each seeing 25 ms. Encoders without such a front-end
    are taken as 20 ms / 25 ms at 16 kHz. An encoder config that states its own `frame_stride` and
    `frame_centre_offset` (Distill-MOS: 320 and 80) gives (stride, 2 * offset + 1): the span whose centre is frame 0's.
    """
    if hasattr(ssl_config, "frame_stride") and hasattr(ssl_config, "frame_centre_offset"):
        return int(ssl_config.frame_stride), int(2 * ssl_config.frame_centre_offset + 1)
    kernels = getattr(ssl_config, "conv_kernel", None) or [400]
    strides = getattr(ssl_config, "conv_stride", None) or [320]
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return jump, field


__all__ = ["MTQNetConfig", "tiny_ssl_config", "ssl_frame_geometry", "PRESETS", "KNOWN_TARGETS"]
