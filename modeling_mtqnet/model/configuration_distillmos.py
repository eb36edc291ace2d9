"""Configuration of the Distill-MOS encoder, MTQ-Net's pretrained SSL branch.

Distill-MOS (Stahl and Gamper, "Distillation and pruning for scalable self-supervised representation-based speech
quality assessment", ICASSP 2025; MIT licence, Microsoft) is a 4.2 M-parameter speech-quality model distilled from an
XLS-R-based one. Its trunk is a compressed complex spectrogram, six 2-D convolutions and a 7-layer transformer over
20 ms frames; `modeling_distillmos.py` builds it from this config, and `mtqnet build-encoder` converts the published
weights (the `distillmos` wheel on PyPI) into a saved folder of this model type.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig


class DistillMosEncoderConfig(PreTrainedConfig):
    r"""Configuration of [`DistillMosEncoder`]. The defaults are the published Distill-MOS model's.

    Args:
        sampling_rate (`int`, defaults to 16000): rate of the waveforms it reads.
        window_samples (`int`, defaults to 122880): the 7.68 s window it was trained on. Every clip is cut into
            consecutive windows of this length, the last one zero-padded, each peak-normalised on its own, as the
            model saw its training clips; only the clip's own frames are kept.
        stft_window (`int`, defaults to 320): STFT window (Hann) and FFT size, 20 ms.
        stft_hop (`int`, defaults to 160): STFT hop, 10 ms.
        magnitude_exponent (`float`, defaults to 0.3): the complex spectrum keeps its phase and has its magnitude
            raised to this power.
        cnn_channels (`list[int]`, defaults to `[64, 64, 128, 256, 256, 256]`): output channels of the 3x3 convs;
            all but the first halve the frequency axis (161 -> 4 bins), the last halves time (20 ms frames).
        leaky_relu_slope (`float`, defaults to 0.1): negative slope of the activation after each conv.
        hidden_size (`int`, defaults to 200): width of the transformer (and of the frames this encoder gives).
        num_hidden_layers (`int`, defaults to 7): transformer encoder layers (post-norm, ReLU feed-forward).
        num_attention_heads (`int`, defaults to 8): attention heads per layer.
        intermediate_size (`int`, defaults to 400): feed-forward width.
        layer_norm_eps (`float`, defaults to 1e-5): epsilon of the transformer's layer norms.
        batch_norm_eps (`float`, defaults to 1e-5): epsilon of the batch norms (frozen statistics).
    """

    model_type = "distillmos_encoder"

    sampling_rate: int = 16000
    window_samples: int = 122880
    stft_window: int = 320
    stft_hop: int = 160
    magnitude_exponent: float = 0.3
    cnn_channels: list[int] | tuple[int, ...] = (64, 64, 128, 256, 256, 256)
    leaky_relu_slope: float = 0.1
    hidden_size: int = 200
    num_hidden_layers: int = 7
    num_attention_heads: int = 8
    intermediate_size: int = 400
    layer_norm_eps: float = 1e-5
    batch_norm_eps: float = 1e-5

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.cnn_channels = list(self.cnn_channels)
        if self.window_samples % self.frame_stride:
            raise ValueError(f"window_samples ({self.window_samples}) must be a multiple of the frame stride "
                             f"({self.frame_stride})")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must divide into {self.num_attention_heads} heads")

    @property
    def frame_stride(self) -> int:
        """Samples per output frame: the STFT hop, halved in time by the last conv (320 = 20 ms)."""
        return 2 * self.stft_hop

    @property
    def frame_centre_offset(self) -> float:
        """Sample on which frame 0 is centred (frame j: j * frame_stride + this). The STFT is padded by
        (window - hop) / 2 on the left, so STFT frame k is centred on k * hop + hop / 2, and output frame j on STFT
        frame 2j."""
        return self.stft_hop / 2

    @property
    def frames_per_window(self) -> int:
        """Frames of one window (384), the length of the positional table."""
        return self.window_samples // self.frame_stride

    @property
    def frequency_bins_out(self) -> int:
        """Frequency bins left after the convs (161 -> 159 -> 79 -> 39 -> 19 -> 9 -> 4)."""
        bins = self.stft_window // 2 + 1
        for index in range(len(self.cnn_channels)):
            bins = (bins - 3) // (2 if index >= 1 else 1) + 1
        return bins

    @property
    def attention_spans_clip(self) -> bool:
        """False: attention runs within each window, so memory grows linearly with the clip (MTQ-Net then keeps its
        one-pass limit at `max_duration_s`)."""
        return False


# A saved MTQ-Net config names this encoder by model type in `ssl_config`; registering it lets transformers resolve it.
AutoConfig.register(DistillMosEncoderConfig.model_type, DistillMosEncoderConfig, exist_ok=True)

__all__ = ["DistillMosEncoderConfig"]
