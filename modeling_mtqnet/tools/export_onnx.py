"""Export a saved MTQ-Net to ONNX: the inference graph (primary heads only) with a dynamic time axis.

    mtqnet export-onnx MODEL_DIR OUT.onnx [--opset 17] [--no-verify]

Graph: input `input_values` (batch, samples) float32 at the model's rate (16 kHz), each clip already peak-normalised
as `MTQNetFeatureExtractor` does (x / max|x|), no padding; outputs `utterance_scores` (batch, n_targets) and
`frame_scores` (batch, frames, n_targets), targets in `config.target_names` order. The sample axis is dynamic; the
batch axis is dynamic too, but a batch must hold clips of EQUAL length (the graph has no attention mask: padding a
clip would change its score). Score clips of different lengths one at a time (batch 1).

The PyTorch forward does three things the ONNX exporter cannot follow, so the exported graph is built by
`MTQNetOnnxGraph`, which runs the model's own trunk code (`MTQNetModel.encode_frames`, the same fusion module as the
regular forward) with frame lengths None:
- `int(tensor)` (lengths, masks) would be traced as constants and freeze the time axis: one unpadded clip needs no
  lengths at all (every frame is valid, every mask is all-true);
- the complex STFT + `.abs()` does not export: the magnitude is computed as a strided conv1d with fixed windowed DFT
  cosine / sine kernels on the reflect-padded signal (the same numbers up to float32 rounding);
- packed sequences do not export: for an unpadded clip the plain BLSTM is identical.
Frame layout: `"aligned"` fusion has one frame per hop (1 + samples // hop); `"time"` fusion concatenates the
spectral frames, the sinc frames (same count) and the SSL encoder's frames, as the PyTorch `frame_scores` do. The file's
metadata (`onnxruntime.InferenceSession(...).get_modelmeta().custom_metadata_map`) records target names, rates, the
fusion mode and the frame geometry.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.modeling_mtqnet import MTQNetForSpeechQualityAssessment
from ..model.wavlm_attention import use_blockwise_wavlm_attention
from ..pretrained import resolve_model
from ..sharing.model_dir import read_saved_config

INPUT_NAME = "input_values"
OUTPUT_NAMES = ("utterance_scores", "frame_scores")
DEFAULT_OPSET = 17


def dft_kernels(n_fft: int, window: torch.Tensor) -> torch.Tensor:
    """Windowed DFT kernels for bins 0..n_fft // 2: (2 * bins, 1, n_fft), cosines then (minus) sines.

    A conv1d of a signal with them, at stride hop, gives the real and imaginary parts of `torch.stft(..., center=False)`
    with that window. The window is zero-padded to n_fft in the middle, as `torch.stft` does for win_length < n_fft.
    """
    left = (n_fft - window.numel()) // 2
    window = F.pad(window.double(), (left, n_fft - window.numel() - left))
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.int64)[:, None]
    samples = torch.arange(n_fft, dtype=torch.int64)[None, :]
    angle = 2 * math.pi * ((bins * samples) % n_fft).double() / n_fft  # exact phase, then float64 trigonometry
    kernels = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window], dim=0)
    return kernels.float()[:, None, :]


class MTQNetOnnxGraph(nn.Module):
    """The inference forward of an MTQ-Net for unpadded clips, written so that the ONNX exporter keeps the time axis.

    It holds the model and calls the trunk's own code (sinc filterbank, SSL encoder and projection, then
    `encode_frames`: fusion, CNN, BLSTM, dense) and the primary heads; only the STFT magnitude is re-expressed (as a
    DFT conv). Auxiliary heads are never called.

    Args:
        model: an `MTQNetForSpeechQualityAssessment` in eval mode (its auxiliary heads may already be dropped).
    """

    def __init__(self, model: MTQNetForSpeechQualityAssessment):
        super().__init__()
        self.model = model
        trunk = model.mtqnet
        self.config = model.config
        self.n_fft, self.hop_length = trunk.spectral.n_fft, trunk.spectral.hop_length
        self.register_buffer("dft", dft_kernels(self.n_fft, trunk.spectral.window()), persistent=False)

    def spectral_magnitude(self, waveforms: torch.Tensor) -> torch.Tensor:
        """|STFT| of (B, N) unpadded clips -> (B, 1 + N // hop, n_fft // 2 + 1), as `SpectralBranch` gives."""
        pad = self.n_fft // 2
        padded = F.pad(waveforms[:, None], (pad, pad), mode="reflect")
        parts = F.conv1d(padded, self.dft, stride=self.hop_length)  # (B, 2 * bins, T)
        real, imaginary = parts.chunk(2, dim=1)
        return torch.sqrt(real * real + imaginary * imaginary).transpose(1, 2)

    def forward(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trunk = self.model.mtqnet
        waveforms = input_values.float()
        spectral = self.spectral_magnitude(waveforms)
        sinc = trunk.sinc(waveforms, spectral.shape[1]) if trunk.sinc is not None else None
        ssl = trunk.encode_ssl(waveforms, None)[0] if trunk.ssl_encoder is not None else None
        # Frame lengths None: every row is one unpadded clip, so fusion, BLSTM and heads see no padding.
        trunk_output = trunk.encode_frames(spectral, sinc, ssl, None, None)
        return self.model.run_heads(self.model.heads, trunk_output)


def onnx_metadata(model: MTQNetForSpeechQualityAssessment) -> dict[str, str]:
    """What a torch-free scorer needs to know, stored as the ONNX file's metadata_props (strings)."""
    config = model.config
    trunk = model.mtqnet
    metadata = {
        "model_type": config.model_type,
        "target_names": json.dumps(list(config.target_names)),
        "sampling_rate": str(config.sampling_rate),
        "hop_length": str(config.hop_length),
        "min_samples": str(config.min_input_samples),
        "max_duration_s": str(config.max_duration_s),
        "peak_normalize": "true",
        "fusion_mode": config.fusion_mode,
        "use_sinc": json.dumps(bool(config.use_sinc)),
        "has_ssl_encoder": json.dumps(trunk.ssl_encoder is not None),
        "batching": "batch axis dynamic for clips of equal length only (no padding, no attention mask)",
    }
    if trunk.ssl_encoder is not None:
        stride, offset = trunk.ssl_frame_geometry()
        metadata["ssl_frame_stride"] = str(stride)
        metadata["ssl_frame_offset"] = str(offset)
    if config.fusion_mode == "time":
        metadata["frame_layout"] = (
            "frames = spectral (1 + N // hop) + sinc (1 + N // hop, if use_sinc) + SSL frames (if has_ssl_encoder), "
            "concatenated along time"
        )
    else:
        metadata["frame_layout"] = "one frame per hop: 1 + N // hop frames, frame t centred on sample t * hop"
    return metadata


def export(
    model: MTQNetForSpeechQualityAssessment,
    output_path: str | os.PathLike,
    opset_version: int = DEFAULT_OPSET,
    example_seconds: float = 1.0,
) -> Path:
    """Export `model` to `output_path` (one file) and write its metadata; returns the path.

    The model's auxiliary heads are dropped in place (`drop_auxiliary_heads()`), it is put in eval mode and float32,
    and a WavLM encoder gets transformers' own attention back (`use_blockwise_wavlm_attention(..., enabled=False)`).

    Raises:
        RuntimeError: the exporter failed (the message names the SSL encoder, the usual suspect for a new encoder type).
    """
    if importlib.util.find_spec("onnx") is None:
        raise ImportError("Exporting to ONNX needs the `onnx` package (torch's exporter uses it): pip install onnx")
    model.drop_auxiliary_heads()
    model.float().eval()
    if model.mtqnet.ssl_encoder is not None:
        # The block-wise WavLM attention loops over blocks whose count the tracer would freeze at the example's
        # length; transformers' own attention traces to one graph for any length (same weights, same outputs).
        use_blockwise_wavlm_attention(model.mtqnet.ssl_encoder, enabled=False)
    graph = MTQNetOnnxGraph(model).eval()
    samples = max(int(example_seconds * model.config.sampling_rate), model.config.min_input_samples)
    example = torch.from_numpy(example_waveform(samples, model.config.sampling_rate))[None]
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter's notice
            warnings.filterwarnings("ignore", message="Constant folding")  # strided slices are left unfolded
            # Every row of a batch is an unpadded clip of the same length, so the LSTM's zero initial states
            # broadcast to any batch size (checked by tests/test_onnx.py).
            warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
            torch.onnx.export(
                graph,
                (example,),
                str(output_path),
                dynamo=False,
                opset_version=opset_version,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 1: "samples"},
                    OUTPUT_NAMES[0]: {0: "batch"},
                    OUTPUT_NAMES[1]: {0: "batch", 1: "frames"},
                },
            )
    except Exception as error:
        encoder = model.mtqnet.ssl_encoder
        hint = (
            f" The model's SSL encoder is a {type(encoder).__name__}; WavLM, HuBERT, wav2vec2 and Distill-MOS are known to export."
            if encoder is not None
            else ""
        )
        raise RuntimeError(f"ONNX export failed: {type(error).__name__}: {error}.{hint}") from error
    _write_metadata(output_path, onnx_metadata(model))
    return output_path


def _write_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = "MTQ-Net speech quality model (mtqnet export-onnx)"
    onnx.save(proto, str(path))


def example_waveform(samples: int, sampling_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A peak-normalised noisy harmonic tone (an input the model accepts), for tracing and verification."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sampling_rate
    pitch = rng.uniform(100, 200)
    signal = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6)) + 0.3 * rng.standard_normal(samples)
    return (signal / np.max(np.abs(signal))).astype(np.float32)


def max_differences(
    model: MTQNetForSpeechQualityAssessment, onnx_path: str | os.PathLike, waveforms: list[np.ndarray]
) -> dict[str, float]:
    """Run each (peak-normalised) waveform through PyTorch and onnxruntime; the largest absolute differences of the
    utterance and frame scores over all of them. Raises ValueError if the frame counts differ."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # do not slow PyTorch down between runs
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    worst = {"utterance_scores": 0.0, "frame_scores": 0.0}
    for waveform in waveforms:
        with torch.no_grad():
            reference = model(torch.from_numpy(waveform)[None])
        utterance, frames = session.run(list(OUTPUT_NAMES), {INPUT_NAME: waveform[None]})
        if frames.shape != tuple(reference.frame_scores.shape):
            raise ValueError(
                f"{waveform.size} samples: the ONNX graph gives {frames.shape[1]} frames, PyTorch "
                f"{reference.frame_scores.shape[1]} (the time axis was not exported as dynamic)"
            )
        pairs = ((OUTPUT_NAMES[0], utterance, reference.logits), (OUTPUT_NAMES[1], frames, reference.frame_scores))
        for name, ours, theirs in pairs:
            worst[name] = max(worst[name], float(np.abs(ours - theirs.numpy()).max()))
    return worst


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


def load_model_dir(model_dir: str | os.PathLike) -> MTQNetForSpeechQualityAssessment:
    """Load a saved MTQ-Net folder for export; a ValueError says plainly what is wrong with the folder."""
    folder = Path(model_dir)
    read_saved_config(folder)
    try:
        model = MTQNetForSpeechQualityAssessment.from_pretrained(folder)
    except Exception as error:  # missing / corrupt weights, a config this code cannot build
        raise ValueError(f"MODEL_DIR {folder}: cannot load the model: {type(error).__name__}: {error}") from error
    return model.drop_auxiliary_heads().eval()


def parse_args(argv: list[str] | None = None, prog: str | None = "mtqnet export-onnx") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="a saved MTQ-Net folder (save_pretrained / mtqnet train)")
    parser.add_argument("output", metavar="OUT.onnx", type=Path, help="the ONNX file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument(
        "--no-verify", dest="verify", action="store_false",
        help="skip the check against PyTorch with onnxruntime (0.7 s and 2.3 s clips, max abs diff <= --atol)",
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="largest accepted difference when verifying")
    args = parser.parse_args(argv)
    args.model_dir = resolve_model(args.model_dir)
    return args


def main(argv: list[str] | None = None, prog: str | None = "mtqnet export-onnx") -> Path:
    args = parse_args(argv, prog)
    try:
        model = load_model_dir(args.model_dir)
    except ValueError as error:
        print(f"export_onnx: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    path = export(model, args.output, opset_version=args.opset)
    targets = ", ".join(model.config.target_names)
    print(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB): input {INPUT_NAME} (batch, samples) float32 at "
          f"{model.config.sampling_rate} Hz, peak-normalised; outputs {OUTPUT_NAMES[0]} (batch, {targets}), "
          f"{OUTPUT_NAMES[1]} (batch, frames, {targets})")
    if args.verify and importlib.util.find_spec("onnxruntime") is None:
        print("onnxruntime is not installed: the check against PyTorch is skipped (pip install onnxruntime)")
    elif args.verify:
        rate = model.config.sampling_rate
        clips = [example_waveform(int(seconds * rate), rate, seed) for seed, seconds in enumerate((0.7, 2.3))]
        worst = max_differences(model, path, clips)
        print(f"onnxruntime vs PyTorch (0.7 s, 2.3 s): max abs diff utterance {worst['utterance_scores']:.2e}, "
              f"frame {worst['frame_scores']:.2e}")
        if max(worst.values()) > args.atol:
            print(f"export_onnx: error: the ONNX graph differs from PyTorch by more than {args.atol}", file=sys.stderr)
            raise SystemExit(1)
    return path


if __name__ == "__main__":
    main()
