"""Make the Distill-MOS encoder folder from the published weights, read as data, never run as code.

```bash
mtqnet build-encoder                                   # rebuild the shipped folder (pretrained/distillmos)
mtqnet build-encoder --output_dir work/distillmos      # ... somewhere else
mtqnet build-encoder --wheel distillmos-0.9.1-py3-none-any.whl --output_dir work/distillmos   # a wheel at hand
```

Steps: `pip download distillmos==0.9.1 --no-deps` (PyPI; the only network this needs), the wheel's SHA-256 checked
against the pin below, its checkpoint read once from inside the zip with `torch.load(weights_only=True)` (tensors
only: nothing in it can run), its weights renamed to this package's modules, the published positional table checked
against the one the model computes, and a saved folder written: config.json, model.safetensors (the encoder and the
published pooling head), the wheel's LICENCE, a card and build_info.json. Nothing imports the `distillmos` package
(it imports torchaudio, which breaks transformers on this stack).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import torch

from ..model.configuration_distillmos import DistillMosEncoderConfig
from ..model.modeling_distillmos import DistillMosForQualityScore, sinusoidal_positions
from ..pretrained import PRETRAINED_DIR, SHIPPED_ENCODER, folder_name
from ..tables import atomic_write_text

BUILD_INFO = "build_info.json"


@dataclasses.dataclass(frozen=True)
class WheelPin:
    """A registry package whose file holds weights: name, version, the wheel's SHA-256 and the checkpoint inside."""

    name: str
    version: str
    filename: str
    sha256: str
    checkpoint: str
    licence_file: str
    licence: str


DISTILLMOS_WHEEL = WheelPin(
    name="distillmos", version="0.9.1", filename="distillmos-0.9.1-py3-none-any.whl",
    sha256="f82e5326ed963ddc28a3e079ded4dbb1bd072ad54be5bdc4380290a9bce3536a",
    checkpoint="distillmos/weights/distill_mos_v7.pt", licence_file="distillmos-0.9.1.dist-info/LICENSE", licence="MIT",
)

# Published name (a regular expression on the checkpoint's keys) -> this package's name.
# (The convs, `cnn.cnn.0, 2, 4...` between activations in a Sequential, become `convolutions.convs.0, 1, 2...`.)
RENAMES: tuple[tuple[str, str], ...] = (
    (r"^transformer_pool_attn\.norm_input\.", "distillmos.input_norm."),
    (r"^transformer_pool_attn\.transformer\.norm\.", "distillmos.projection_norm."),
    (r"^transformer_pool_attn\.transformer\.linear_proj\.", "distillmos.projection."),
    (r"^transformer_pool_attn\.transformer\.transformer_encoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$",
     r"distillmos.layers.\1.qkv.\2"),
    (r"^transformer_pool_attn\.transformer\.transformer_encoder\.layers\.(\d+)\.self_attn\.out_proj\.",
     r"distillmos.layers.\1.attention_output."),
    (r"^transformer_pool_attn\.transformer\.transformer_encoder\.layers\.(\d+)\.linear1\.",
     r"distillmos.layers.\1.feed_forward_in."),
    (r"^transformer_pool_attn\.transformer\.transformer_encoder\.layers\.(\d+)\.linear2\.",
     r"distillmos.layers.\1.feed_forward_out."),
    (r"^transformer_pool_attn\.transformer\.transformer_encoder\.layers\.(\d+)\.norm1\.",
     r"distillmos.layers.\1.attention_norm."),
    (r"^transformer_pool_attn\.transformer\.transformer_encoder\.layers\.(\d+)\.norm2\.",
     r"distillmos.layers.\1.output_norm."),
    (r"^transformer_pool_attn\.norm_trans\.", "distillmos.output_norm."),
    (r"^transformer_pool_attn\.pool\.linear1\.", "pooling.attention_in."),
    (r"^transformer_pool_attn\.pool\.linear2\.", "pooling.attention_out."),
    (r"^transformer_pool_attn\.pool\.linear3\.", "pooling.score."),
)
POSITIONAL_TABLE = "transformer_pool_attn.transformer.position_encoding.pe"


def renamed(key: str) -> str:
    """This package's name of a published weight; a ValueError for a key the conversion does not know."""
    conv = re.match(r"^cnn\.cnn\.(\d+)\.(weight|bias)$", key)
    if conv:
        return f"distillmos.convolutions.convs.{int(conv.group(1)) // 2}.{conv.group(2)}"
    for pattern, replacement in RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    raise ValueError(f"the checkpoint holds a weight this conversion does not know: {key}")


def convert_state_dict(published: dict[str, torch.Tensor], config: DistillMosEncoderConfig) -> dict[str, torch.Tensor]:
    """The published state dict under this package's names. Its positional table is not kept (the model computes
    it) but must equal the computed one (to 1e-4: the published table was computed elsewhere, and sines of
    arguments near 300 differ by 1.5e-5 between implementations)."""
    table = published.get(POSITIONAL_TABLE)
    if table is None:
        raise ValueError(f"the checkpoint has no {POSITIONAL_TABLE}: not the Distill-MOS model this conversion knows")
    expected = sinusoidal_positions(config.frames_per_window, config.hidden_size)
    if table.shape[-2:] != expected.shape or not torch.allclose(table[0].float(), expected, atol=1e-4):
        raise ValueError("the checkpoint's positional table differs from the one this model computes")
    return {renamed(key): value for key, value in published.items() if key != POSITIONAL_TABLE}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(pin: WheelPin, directory: Path) -> Path:
    """`pip download NAME==VERSION --no-deps` into `directory`; returns the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", f"{pin.name}=={pin.version}", "--no-deps",
               "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "-d", str(directory)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = directory / pin.filename
    if result.returncode != 0 or not wheel.is_file():
        raise RuntimeError(f"pip could not download {pin.name}=={pin.version}: {result.stderr.strip()[-500:]}")
    return wheel


def read_checkpoint(wheel: Path, pin: WheelPin) -> tuple[dict[str, torch.Tensor], str]:
    """The checkpoint's state dict (tensors only, `weights_only=True`) and the licence text, from a hash-checked
    wheel."""
    digest = sha256_of(wheel)
    if digest != pin.sha256:
        raise ValueError(f"{wheel} has SHA-256 {digest}, not the pinned {pin.sha256} of {pin.name} {pin.version}")
    with zipfile.ZipFile(wheel) as archive:
        checkpoint = torch.load(io.BytesIO(archive.read(pin.checkpoint)), map_location="cpu", weights_only=True)
        licence = archive.read(pin.licence_file).decode("utf-8")
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{pin.checkpoint} in {wheel.name} holds no 'model' state dict")
    return state, licence


CARD = """---
license: mit
library_name: transformers
tags: [speech-quality-assessment, audio, distillmos, mtqnet]
---

# Distill-MOS (converted for MTQ-Net)

The published Distill-MOS model (Benjamin Stahl and Hannes Gamper, "Distillation and Pruning for Scalable
Self-Supervised Representation-Based Speech Quality Assessment", ICASSP 2025; code and weights by Microsoft under
the MIT licence, `LICENSE` beside this card): a 4.2 M-parameter non-intrusive MOS model distilled from an XLS-R-based
one. MTQ-Net uses its trunk as the SSL branch (`--ssl_model distillmos`, preset `small-distillmos`); the published
pooling head is kept so that the conversion can be checked score for score.

- Source: `{name}=={version}` on PyPI, file `{filename}`, SHA-256 `{sha256}`; checkpoint `{checkpoint}`, read
  with `torch.load(weights_only=True)` and renamed to this package's modules; nothing of the package was run.
- Weights: {parameters:,} parameters, float32, `model.safetensors`.
- Rebuild: `mtqnet build-encoder` (docs/pretrained.md).

```python
from modeling_mtqnet.model.modeling_distillmos import DistillMosForQualityScore
model = DistillMosForQualityScore.from_pretrained(folder).eval()
model(waveform_16k[None])   # the published MOS, 1..5
```
"""


def build_encoder(output_dir: Path, wheel: Path | None = None, overwrite: bool = False) -> Path:
    """Write the encoder folder from `wheel` (downloaded and hash-checked when None). Returns the folder."""
    if output_dir.exists() and any(output_dir.iterdir()) and not (output_dir / BUILD_INFO).is_file() and not overwrite:
        raise ValueError(f"{output_dir} holds files this command did not write (no {BUILD_INFO}); pass --overwrite "
                         "or choose another folder")
    pin = DISTILLMOS_WHEEL
    with tempfile.TemporaryDirectory() as scratch:
        wheel = wheel or download_wheel(pin, Path(scratch))
        published, licence = read_checkpoint(wheel, pin)
    config = DistillMosEncoderConfig()
    model = DistillMosForQualityScore(config)
    model.load_state_dict(convert_state_dict(published, config), strict=True)
    model.eval().save_pretrained(output_dir)
    (output_dir / "LICENSE").write_text(licence)
    parameters = sum(p.numel() for p in model.parameters())
    atomic_write_text(output_dir / "README.md", CARD.format(**dataclasses.asdict(pin), parameters=parameters))
    info = {"source": dataclasses.asdict(pin), "parameters": parameters}
    atomic_write_text(output_dir / BUILD_INFO, json.dumps(info, indent=2))
    print(f"[build-encoder] {parameters:,} parameters from {pin.name} {pin.version} -> {output_dir}")
    return output_dir


def parse_args(argv: Sequence[str] | None = None, prog: str = "mtqnet build-encoder") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=PRETRAINED_DIR / folder_name(SHIPPED_ENCODER),
                        help="folder to write (default: the package's shipped encoder folder)")
    parser.add_argument("--wheel", type=Path, help=f"a downloaded {DISTILLMOS_WHEEL.filename} (default: pip download)")
    parser.add_argument("--overwrite", action="store_true", help="replace a folder this command did not write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, prog: str = "mtqnet build-encoder") -> Path:
    args = parse_args(argv, prog)
    return build_encoder(args.output_dir, args.wheel, args.overwrite)


if __name__ == "__main__":
    main()
