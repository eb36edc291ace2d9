"""Models trained here and shipped inside the package, each a saved-model folder found by a short name, offline.

    from modeling_mtqnet import pipeline, pretrained_path
    scorer = pipeline("speech-quality-assessment", model="mtqnet/teacher-pesq-stoi-sdi")
    model = AutoModel.from_pretrained(pretrained_path("mtqnet/teacher-pesq-stoi-sdi"))

The commands (`mtqnet score --model`, `mtqnet annotate --teacher`, `mtqnet train --teacher`, `mtqnet app --model`)
take the short names too. transformers' own `pipeline()` and `from_pretrained()` would look a short name up on the
Hub, so give them `pretrained_path(name)`, or use this package's `pipeline`, which resolves it first. Each folder
is what `save_pretrained` writes (config, feature-extractor config, safetensors weights) plus its model card
(README.md) and `build_info.json`; `mtqnet build-pretrained NAME` rebuilds it from nothing (docs/pretrained.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..model.configuration_mtqnet import PRESETS

PRETRAINED_DIR = Path(__file__).resolve().parent
NAMESPACE = "mtqnet"

#: short name -> folder (under this package) and what it is
SHIPPED: dict[str, str] = {
    "mtqnet/teacher-pesq-stoi-sdi": "non-intrusive PESQ / STOI / SDI estimator (the MPL teacher), `small-distillmos` "
                                    "MOSA-Net trunk (the pretrained Distill-MOS encoder, frozen) trained on "
                                    "intrusive labels of real speech",
    "mtqnet/small-p835": "S-MOS / N-MOS / G-MOS model (`small-distillmos` preset, MPL + KT: the teacher's trunk and "
                         "pseudo labels) trained on DNSMOS P.835 stand-in labels of real speech: it predicts DNSMOS "
                         "P.835, not 3QUEST",
}


#: The pretrained encoder shipped with the package (`mtqnet build-encoder` makes its folder from the published
#: Distill-MOS weights): MTQ-Net's SSL branch, `--ssl_model distillmos`. Not an MTQ-Net model: it has no short name
#: in SHIPPED and the scoring commands do not take it.
SHIPPED_ENCODER = "mtqnet/distillmos"
#: The names `--ssl_model` (and `load_ssl_weights`) take for it.
ENCODER_NAMES = ("distillmos", SHIPPED_ENCODER)
#: The encoder weights a preset's SSL branch loads when training starts from it (`mtqnet train --preset`).
PRESET_SSL_MODELS = {"small-distillmos": "distillmos"}


def encoder_path() -> Path:
    """The shipped Distill-MOS encoder folder; a ValueError saying how to make it when it has no weights."""
    folder = PRETRAINED_DIR / folder_name(SHIPPED_ENCODER)
    if not (folder / "model.safetensors").is_file() or not (folder / "config.json").is_file():
        raise ValueError(f"The Distill-MOS encoder has no weights in {folder}; make them with `mtqnet build-encoder`")
    return folder


def resolve_ssl_model(name_or_path: str | os.PathLike) -> str:
    """The shipped encoder's folder for `distillmos` / `mtqnet/distillmos`; anything else (a folder, a Hub id)
    unchanged. A local folder of that name wins, as in transformers."""
    name = os.fspath(name_or_path)
    if name in ENCODER_NAMES and not Path(name).is_dir():
        return str(encoder_path())
    return name


#: The MPL teacher shipped with the package. `mtqnet train` starts a student from its trunk by default
#: (`--method mpl_kt`), and the demo uses it unless told to train one.
SHIPPED_TEACHER = "mtqnet/teacher-pesq-stoi-sdi"
#: Its trunk's preset (with the preset's encoder and fusion mode); only a student built alike can start from it.
SHIPPED_TEACHER_PRESET = "small-distillmos"


def shipped_teacher_fits(preset: str, ssl_model: str | None = None, fusion_mode: str | None = None) -> bool:
    """Whether a student of `preset`, SSL encoder `ssl_model` (None: the preset's; "none": no SSL branch) and
    `fusion_mode` (None: the preset's) is built like the shipped teacher's trunk, so that `load_trunk_from` can take
    it."""
    teacher_fusion = PRESETS[SHIPPED_TEACHER_PRESET].get("fusion_mode")
    teacher_ssl = PRESET_SSL_MODELS.get(SHIPPED_TEACHER_PRESET, "none")
    chosen_ssl = ssl_model or PRESET_SSL_MODELS.get(preset, "none")
    same_ssl = chosen_ssl == teacher_ssl or {chosen_ssl, teacher_ssl} <= set(ENCODER_NAMES)
    return preset == SHIPPED_TEACHER_PRESET and same_ssl and fusion_mode in (None, teacher_fusion)


def folder_name(short_name: str) -> str:
    """The package folder of a short name: `mtqnet/teacher-pesq-stoi-sdi` -> `teacher-pesq-stoi-sdi`."""
    return short_name.split("/", 1)[1]


def is_short_name(name: object) -> bool:
    """Whether `name` is one of this package's short names (`mtqnet/...`)."""
    return isinstance(name, str) and name in SHIPPED


def pretrained_path(short_name: str) -> Path:
    """The folder of a shipped model; a ValueError naming the shipped ones for anything else, or when the folder
    has no weights (a source checkout where they were not built)."""
    if short_name not in SHIPPED:
        raise ValueError(f"{short_name!r} is not a model shipped with the package; shipped: {', '.join(SHIPPED)}")
    folder = PRETRAINED_DIR / folder_name(short_name)
    if not (folder / "model.safetensors").is_file() or not (folder / "config.json").is_file():
        raise ValueError(f"The shipped model {short_name} has no weights in {folder}; rebuild it with "
                         f"`mtqnet build-pretrained {folder_name(short_name)}`")
    return folder


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """A shipped model's folder for its short name; anything else (a folder, a Hub id) unchanged. A local folder
    that happens to carry the same name (./mtqnet/teacher-pesq-stoi-sdi) wins, as in transformers."""
    name = os.fspath(name_or_path)
    if is_short_name(name) and not Path(name).is_dir():
        return str(pretrained_path(name))
    return name


__all__ = ["ENCODER_NAMES", "PRESET_SSL_MODELS", "PRETRAINED_DIR", "SHIPPED", "SHIPPED_ENCODER", "encoder_path", "resolve_ssl_model", "SHIPPED_TEACHER", "SHIPPED_TEACHER_PRESET", "folder_name", "is_short_name",
           "pretrained_path", "resolve_model", "shipped_teacher_fits"]
