"""Feature extractor for MTQ-Net: any audio in, 16 kHz mono float32 peak-normalised waveforms out.

Only numpy, torch, transformers and the standard library are imported at module level, so this file can travel with a
saved model as remote code. soundfile (file reading) and soxr (resampling) are imported when first needed.
"""

from __future__ import annotations

import os
import struct
import warnings
from typing import Any, Sequence

import numpy as np
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import TensorType

AudioLike = Any  # str | os.PathLike | np.ndarray | torch.Tensor | list[float] | dict with "array"/"raw" + "sampling_rate"

ACTIVE_FRAME_S = 0.02  # 20 ms frames for the active speech level
ACTIVE_RANGE_DB = 40.0  # a frame is active when its power is within this many dB of the loudest frame
DEFAULT_MIN_LEVEL_DB = -70.0  # below this active level (dBFS) a clip holds no speech to rate (1-LSB dither: -90)


class TruncatedAudioWarning(UserWarning):
    """A file that declares more audio than it holds (a cut-off download or copy): only the part there is read."""


def _require(module_name: str, purpose: str):
    try:
        return __import__(module_name)
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(f"{purpose} needs the `{module_name}` package: pip install {module_name}") from error


def wav_data_shortfall(path: str | os.PathLike) -> int:
    """Bytes that a RIFF / RIFX WAVE file's data chunk declares beyond the end of the file: 0 for a complete file,
    another format, or a streamed WAV of unknown length."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return 0
        order = "<" if head[:4] == b"RIFF" else ">"
        size = os.fstat(handle.fileno()).st_size
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk = handle.read(8)
            length = struct.unpack(order + "I", chunk[4:])[0]
            if chunk[:4] == b"data":
                return 0 if length in (0, 0xFFFFFFFF) else max(0, position + 8 + length - size)
            position += 8 + length + (length & 1)
    return 0


def warn_if_truncated(path: str) -> None:
    """A `TruncatedAudioWarning` when a WAV file holds less audio than its header declares."""
    missing = wav_data_shortfall(path)
    if missing:
        warnings.warn(f"{path} is cut short: its WAV header declares {missing} more bytes of audio than the file holds "
                      "(a truncated copy?); only the part that is there is scored", TruncatedAudioWarning, stacklevel=3)


def read_audio_file(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a sound file with soundfile as float32 (any subtype libsndfile decodes). Returns (samples, rate).

    A WAV file cut short (its data chunk declares more bytes than it holds) is read as far as it goes, with a
    `TruncatedAudioWarning` that says how much is missing.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: libsndfile cannot decode it (corrupt, or a format it does not read), naming the file.
    """
    soundfile = _require("soundfile", "Reading audio files")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio file not found: {path}")
    try:
        samples, sampling_rate = soundfile.read(path, always_2d=False, dtype="float32")
    except Exception as error:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise ValueError(f"Cannot decode audio file {path}: {error}") from error
    warn_if_truncated(path)
    return samples, int(sampling_rate)


def audio_file_duration(path: str | os.PathLike) -> float | None:
    """A file's duration in seconds from its header (soundfile), or None when the header cannot be read."""
    soundfile = _require("soundfile", "Reading audio files")
    try:
        info = soundfile.info(os.fspath(path))
    except Exception:  # noqa: BLE001 - reading the file reports the problem properly
        return None
    return info.frames / info.samplerate if info.samplerate else None


def stream_audio(path: str | os.PathLike, target_rate: int, block_s: float = 10.0):
    """Yield a file's audio as mono float32 blocks at `target_rate`, reading `block_s` seconds at a time (soundfile)
    and resampling with a soxr stream: memory stays that of one block, however long the file. The blocks joined
    equal `load_audio(path, None, target_rate)` up to float rounding."""
    soundfile = _require("soundfile", "Reading audio files")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio file not found: {path}")
    try:
        handle = soundfile.SoundFile(path)
    except Exception as error:
        raise ValueError(f"Cannot decode audio file {path}: {error}") from error
    warn_if_truncated(path)
    with handle:
        rate = int(handle.samplerate)
        stream = None
        if rate != target_rate:
            stream = _require("soxr", "Resampling").ResampleStream(rate, target_rate, 1, dtype="float32", quality="HQ")
        for block in handle.blocks(blocksize=max(1, int(block_s * rate)), dtype="float32", always_2d=True):
            mono = np.ascontiguousarray(block.mean(axis=1), dtype=np.float32)
            yield stream.resample_chunk(mono, last=False) if stream is not None else mono
        if stream is not None:
            yield stream.resample_chunk(np.zeros(0, np.float32), last=True)


class AudioScan:
    """What `check_waveform` needs of a clip, gathered block by block (`add`), so that a long file is checked
    without holding it: sample count, non-finite and non-zero samples, 20 ms frame powers."""

    def __init__(self, sampling_rate: int):
        self.sampling_rate, self.frame = sampling_rate, max(1, int(round(ACTIVE_FRAME_S * sampling_rate)))
        self.size = self.non_finite = 0
        self.any_signal = False
        self.powers: list[np.ndarray] = []
        self.rest = np.zeros(0, np.float64)

    def add(self, block: np.ndarray) -> None:
        self.size += block.size
        finite = np.isfinite(block)
        self.non_finite += int(block.size - np.count_nonzero(finite))
        self.any_signal = self.any_signal or bool(np.any(block[finite]))
        joined = np.concatenate([self.rest, np.where(finite, block, 0.0).astype(np.float64)])
        whole = joined.size // self.frame * self.frame
        if whole:
            self.powers.append(np.mean(joined[:whole].reshape(-1, self.frame) ** 2, axis=1))
        self.rest = joined[whole:]

    def level_db(self) -> float:
        """`active_level_db` of everything added (a clip shorter than one frame: its mean square)."""
        powers = np.concatenate(self.powers) if self.powers else np.array([np.mean(self.rest**2) if self.rest.size
                                                                             else 0.0])
        power = active_power_of_frames(powers)
        return 10 * float(np.log10(power)) if power > 0 else float("-inf")

    def check(self, min_samples: int, max_samples: int | None, name: str = "audio",
              min_level_db: float | None = None) -> None:
        """`check_waveform`'s checks, with its messages, on the scanned clip."""
        if self.size == 0:
            raise ValueError(f"{name} is empty (0 samples)")
        if self.non_finite:
            raise ValueError(f"{name} contains {self.non_finite} NaN or Inf samples")
        if self.size < min_samples:
            raise ValueError(f"{name} is too short: {self.size} samples after resampling, at least {min_samples} are "
                             "needed for one frame of every branch")
        if max_samples is not None and self.size > max_samples:
            raise ValueError(f"{name} is too long for one pass ({self.size} samples > {max_samples}); score it in "
                             "windows with the pipeline's `chunk_length_s`")
        if not self.any_signal:
            raise ValueError(f"{name} is silent (every sample is zero): there is no signal to rate")
        if min_level_db is not None and (level := self.level_db()) < min_level_db:
            raise ValueError(f"{name} is near-silent: its active level is {level:.1f} dBFS, below the floor of "
                             f"{min_level_db:g} dBFS (the feature extractor's min_level_db): there is no speech to rate")


def to_mono_float(samples: Any, name: str = "audio") -> np.ndarray:
    """Convert one clip to a 1-D float32 array in [-1, 1].

    Integer PCM is scaled by its type's full scale (int16 by 32768, uint8 centred on 128). A 2-D array is one
    multi-channel clip; the shorter axis is taken as the channel axis and averaged (downmix).
    """
    if hasattr(samples, "detach"):  # torch.Tensor, without importing torch here
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples)
    if samples.dtype == object or samples.dtype.kind not in "iufb":
        raise ValueError(f"{name}: expected numeric samples, got an array of dtype {samples.dtype}")
    if samples.dtype.kind in "iu":
        info = np.iinfo(samples.dtype)
        offset = (int(info.max) + 1) / 2 if samples.dtype.kind == "u" else 0.0
        scale = (int(info.max) + 1) / 2 if samples.dtype.kind == "u" else float(-int(info.min))
        samples = (samples.astype(np.float64) - offset) / scale
    samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        channel_axis = 0 if samples.shape[0] < samples.shape[1] else 1
        samples = samples.mean(axis=channel_axis)
    elif samples.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D (mono) or 2-D (multi-channel) array, got shape {samples.shape}")
    return samples


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample with soxr (high quality); a no-op at the same rate."""
    if orig_rate == target_rate:
        return samples
    if orig_rate <= 0:
        raise ValueError(f"Invalid sampling rate {orig_rate}")
    soxr = _require("soxr", "Resampling")
    return soxr.resample(samples, orig_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def load_audio(audio: AudioLike, sampling_rate: int | None, target_rate: int, name: str = "audio") -> np.ndarray:
    """Turn one input of any accepted kind into a mono float32 waveform at `target_rate` (not yet checked).

    Accepted: a file path (read with soundfile), a dict with `"array"` or `"raw"` and `"sampling_rate"`, a torchcodec
    `AudioDecoder` (what datasets' `Audio` feature decodes to), or an array / tensor / list of samples, for which
    `sampling_rate` is required: guessing it is the most common silent bug of speech quality tools.
    """
    if isinstance(audio, (str, os.PathLike)):
        samples, file_rate = read_audio_file(audio)
        return resample(to_mono_float(samples, name=f"{name} ({os.fspath(audio)})"), file_rate, target_rate)
    if hasattr(audio, "get_all_samples"):  # a torchcodec AudioDecoder, as datasets' Audio feature decodes to
        decoded = audio.get_all_samples()
        return resample(to_mono_float(decoded.data, name), int(decoded.sample_rate), target_rate)
    if isinstance(audio, dict):
        if "path" in audio and audio.get("array") is None and audio.get("raw") is None:
            return load_audio(audio["path"], None, target_rate, name)
        array = audio.get("array", audio.get("raw"))
        if array is None or "sampling_rate" not in audio:
            raise ValueError(f"{name}: a dict input needs an 'array' (or 'raw') and a 'sampling_rate' key")
        return resample(to_mono_float(array, name), int(audio["sampling_rate"]), target_rate)
    if sampling_rate is None:
        raise ValueError(
            f"{name}: an array input needs `sampling_rate=` (the rate it was recorded at); "
            f"the model resamples to {target_rate} Hz itself. Pass file paths to read the rate from the file."
        )
    return resample(to_mono_float(audio, name), int(sampling_rate), target_rate)


def frame_powers(signal: np.ndarray, frame: int) -> np.ndarray:
    """Mean square of each full frame (one frame for a signal shorter than `frame`), in float64."""
    signal = np.asarray(signal, dtype=np.float64)
    count = max(1, signal.size // frame)
    if signal.size < frame:
        return np.array([np.mean(signal**2)])
    return np.mean(signal[: count * frame].reshape(count, frame) ** 2, axis=1)


def active_speech_power(signal: np.ndarray, frame: int = 320, range_db: float = ACTIVE_RANGE_DB) -> float:
    """Mean square over the active frames (20 ms at 16 kHz by default): those whose power is within `range_db` of the
    loudest frame. 0 for an all-zero signal."""
    return active_power_of_frames(frame_powers(signal, frame), range_db)


def active_power_of_frames(powers: np.ndarray, range_db: float = ACTIVE_RANGE_DB) -> float:
    """Mean of the frame powers within `range_db` of the largest; 0 when every frame is silent."""
    peak = float(powers.max())
    if peak <= 0.0:
        return 0.0
    return float(powers[powers >= peak * 10 ** (-range_db / 10)].mean())


def active_level_db(samples: np.ndarray, sampling_rate: int) -> float:
    """Active speech level in dB relative to a full-scale square wave (dBFS): 10 log10 of `active_speech_power`
    over 20 ms frames; -inf for an all-zero signal. Speech recorded sensibly sits around -40..-20 dBFS."""
    power = active_speech_power(samples, max(1, int(round(ACTIVE_FRAME_S * sampling_rate))))
    return 10 * float(np.log10(power)) if power > 0 else float("-inf")


def check_waveform(samples: np.ndarray, min_samples: int, max_samples: int | None, name: str = "audio",
                   min_level_db: float | None = None, sampling_rate: int = 16000) -> None:
    """Raise a ValueError that names the problem when a clip cannot be scored honestly.

    `min_level_db`: the floor of the clip's active level (`active_level_db`, before any normalisation); a quieter
    clip (a file of dither, one stray sample) holds no speech to rate and would be blown up to full scale by peak
    normalisation, so it is refused. None: no floor (only all-zero clips are refused)."""
    scan = AudioScan(sampling_rate)
    scan.add(np.asarray(samples))
    scan.check(min_samples, max_samples, name, min_level_db)


def _is_batch(audio: Any) -> bool:
    """A list/tuple of clips (paths, dicts, arrays, lists) is a batch; a flat list of numbers is one clip."""
    if isinstance(audio, (list, tuple)):
        return len(audio) == 0 or isinstance(audio[0], (str, os.PathLike, dict, list, tuple)) or np.ndim(audio[0]) > 0
    return False


class MTQNetFeatureExtractor(SequenceFeatureExtractor):
    r"""Prepares audio for MTQ-Net: reads, downmixes, resamples to 16 kHz, checks, peak-normalises and pads.

    Input kinds: a file path; an array, tensor or list of samples with `sampling_rate=`; a dict with `"array"` (or
    `"raw"`) and `"sampling_rate"`; or a list of any of these (a batch). A single 2-D array is one multi-channel clip
    (the shorter axis is the channel axis), never a batch. Integer PCM is scaled to [-1, 1]. Files and dicts carry
    their own rate, which wins over a `sampling_rate=` argument.

    Errors (ValueError, naming the clip): no `sampling_rate` for an array, empty, NaN/Inf samples, shorter than one
    frame (`min_samples`), longer than `max_duration_s`, all-zero (silent), near-silent (active level below
    `min_level_db`), undecodable file. A WAV file cut short is read as far as it goes with a `TruncatedAudioWarning`.

    Args:
        sampling_rate (`int`, defaults to 16000): the model's rate.
        peak_normalize (`bool`, defaults to `True`): divide each clip by its peak absolute value, as the MOSA-Net
            reference does before every branch; makes scores independent of playback gain.
        min_samples (`int`, defaults to 400): shortest clip accepted, at the model's rate (at least one frame in
            the STFT, sinc and SSL branches; `MTQNetConfig.min_input_samples`).
        max_duration_s (`float`, defaults to 600.0): longest clip accepted in one piece.
        min_level_db (`float`, defaults to -70.0): the lowest active speech level (dBFS: 20 ms frames within 40 dB
            of the loudest, before normalisation) of a clip that is scored; quieter clips are refused as near-silent
            (peak normalisation would otherwise blow dither up to full scale). None accepts any clip that is not all
            zeros.
        padding_value (`float`, defaults to 0.0): value of padded samples (the model relies on zeros).
    """

    model_input_names = ["input_values", "attention_mask"]
    _auto_class = "AutoFeatureExtractor"

    def __init__(
        self,
        sampling_rate: int = 16000,
        peak_normalize: bool = True,
        min_samples: int = 400,
        max_duration_s: float | None = 600.0,
        padding_value: float = 0.0,
        min_level_db: float | None = DEFAULT_MIN_LEVEL_DB,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("return_attention_mask", True)
        kwargs.pop("feature_size", None)  # always 1 (a waveform); saved in preprocessor_config.json by the base class
        super().__init__(feature_size=1, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.peak_normalize = peak_normalize
        self.min_samples = min_samples
        self.max_duration_s = max_duration_s
        self.min_level_db = min_level_db

    @classmethod
    def from_model_config(cls, config: Any, **kwargs: Any) -> "MTQNetFeatureExtractor":
        """The feature extractor matching an `MTQNetConfig` (rate, shortest clip, longest one-pass clip)."""
        return cls(
            sampling_rate=config.sampling_rate,
            min_samples=config.min_input_samples,
            max_duration_s=config.one_pass_limit_s,
            **kwargs,
        )

    def prepare_waveform(self, audio: AudioLike, sampling_rate: int | None = None, name: str = "audio") -> np.ndarray:
        """One clip of any accepted kind -> checked, normalised mono float32 at the model's rate."""
        samples = load_audio(audio, sampling_rate, self.sampling_rate, name=name)
        max_samples = None if self.max_duration_s is None else int(self.max_duration_s * self.sampling_rate)
        check_waveform(samples, self.min_samples, max_samples, name=name, min_level_db=self.min_level_db,
                       sampling_rate=self.sampling_rate)
        if self.peak_normalize:
            samples = samples / np.max(np.abs(samples))
        return samples.astype(np.float32, copy=False)

    def __call__(
        self,
        raw_speech: AudioLike | Sequence[AudioLike],
        sampling_rate: int | None = None,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | TensorType | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Featurise one clip or a batch.

        Returns:
            [`BatchFeature`] with `input_values` (float32 waveforms, zero-padded to the longest clip) and
            `attention_mask` (1 for real samples).
        """
        clips = list(raw_speech) if _is_batch(raw_speech) else [raw_speech]
        if not clips:
            raise ValueError("No audio given (an empty batch)")
        waveforms = [
            self.prepare_waveform(clip, sampling_rate, name=f"audio #{index}" if len(clips) > 1 else "audio")
            for index, clip in enumerate(clips)
        ]
        if not padding and len({w.size for w in waveforms}) > 1:
            raise ValueError("Clips of different lengths need padding=True to be returned as one batch")
        encoded = BatchFeature({"input_values": waveforms})
        padded = self.pad(
            encoded,
            padding=padding,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=True if return_attention_mask is None else return_attention_mask,
        )
        input_values = [np.asarray(values, dtype=np.float32) for values in padded["input_values"]]
        result = {"input_values": np.stack(input_values)}
        if "attention_mask" in padded:
            result["attention_mask"] = np.stack([np.asarray(mask, dtype=np.int64) for mask in padded["attention_mask"]])
        return BatchFeature(result, tensor_type=return_tensors)


__all__ = ["MTQNetFeatureExtractor", "load_audio", "read_audio_file", "to_mono_float", "check_waveform",
           "active_level_db", "active_speech_power", "frame_powers", "wav_data_shortfall", "TruncatedAudioWarning",
           "stream_audio", "audio_file_duration", "AudioScan"]
