"""Checks of a saved MTQ-Net folder, shared by the tools that take one (mtqnet export-onnx, mtqnet push)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class ModelDirError(ValueError):
    """A folder that is not a usable saved MTQ-Net; the message says what is wrong and how to fix it."""


def read_saved_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    """config.json of a saved MTQ-Net folder as a dict, or a ModelDirError naming what is missing or wrong."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ModelDirError(f"MODEL_DIR {folder} does not exist or is not a folder (pass the folder that "
                            "model.save_pretrained or mtqnet train wrote)")
    path = folder / "config.json"
    if not path.is_file():
        raise ModelDirError(f"MODEL_DIR {folder} has no config.json: not a saved model folder (save it with "
                            "model.save_pretrained(folder))")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelDirError(f"MODEL_DIR {folder}: config.json is not readable JSON ({error})") from error
    found = config.get("model_type") if isinstance(config, dict) else None
    if found != "mtqnet":
        raise ModelDirError(f"MODEL_DIR {folder} holds a {found!r} model, not an MTQ-Net: model_type is {found!r}, "
                            "expected 'mtqnet'")
    return config


__all__ = ["ModelDirError", "read_saved_config"]
