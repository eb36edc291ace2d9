"""Folders saved before the package was arranged in wings (0.1.0, flat layout) still load, to the same scores.

The fixtures were written by the package at commit 7d92d21 (see tests/fixtures/make_saved_model_fixture.py): a tiny
model with auxiliary heads, "aligned" and "time" fusion, its four code files and the scores it gave then.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoFeatureExtractor, AutoModel

from modeling_mtqnet import MTQNetFeatureExtractor, MTQNetForSpeechQualityAssessment
from modeling_mtqnet.model.modeling_mtqnet import CODE_FILES
from tests.helpers import noisy_tone, run_without_package

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FOLDERS = sorted(FIXTURES.glob("saved_model_0.1.0_*"))
# The code files 0.1.0 saved (today's folders carry more: wavlm_attention.py and the Distill-MOS encoder's two files).
OLD_CODE_FILES = sorted(path.name for path in (FIXTURES / "saved_model_0.1.0_aligned").glob("*.py"))


def clips(expected: dict) -> list[np.ndarray]:
    return [noisy_tone(**clip["noisy_tone"]) for clip in expected["clips"]]


def weight_names(folder: Path) -> set[str]:
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        return set(handle.keys())


def without_versions(config: dict) -> dict:
    """A config dict without what transformers itself writes at save time, at any depth: its version, and the dtype
    that `from_pretrained` records in a sub-config (the SSL encoder's)."""
    return {key: without_versions(value) if isinstance(value, dict) else value
            for key, value in config.items() if key not in ("transformers_version", "dtype")}


@pytest.fixture(params=FOLDERS, ids=lambda folder: folder.name)
def old_folder(request, tmp_path) -> Path:
    folder = tmp_path / request.param.name
    shutil.copytree(request.param, folder)  # loading must not need to write beside the fixture
    # Both folders were saved by the same 0.1.0 code; its four code files are stored once, in the "aligned" folder.
    for name in OLD_CODE_FILES:
        if not (folder / name).exists():
            shutil.copyfile(FIXTURES / "saved_model_0.1.0_aligned" / name, folder / name)
    return folder


def test_fixtures_are_there():
    assert {folder.name for folder in FOLDERS} == {"saved_model_0.1.0_aligned", "saved_model_0.1.0_time"}


def test_old_folder_loads_with_todays_code_to_the_same_scores(old_folder):
    expected = json.loads((old_folder / "expected_scores.json").read_text())
    model = MTQNetForSpeechQualityAssessment.from_pretrained(old_folder).eval()
    extractor = MTQNetFeatureExtractor.from_pretrained(old_folder)
    with torch.no_grad():
        outputs = model(**extractor(clips(expected), sampling_rate=16000, return_tensors="pt"))
    np.testing.assert_allclose(outputs.logits.numpy(), expected["logits"], atol=1e-5)
    np.testing.assert_allclose(outputs.auxiliary_logits.numpy(), expected["auxiliary_logits"], atol=1e-5)


def test_old_folder_loads_through_the_auto_classes(old_folder):
    model = AutoModel.from_pretrained(old_folder)
    assert isinstance(model, MTQNetForSpeechQualityAssessment)
    assert isinstance(AutoFeatureExtractor.from_pretrained(old_folder), MTQNetFeatureExtractor)


def test_todays_save_keeps_the_old_weight_names_and_config_fields(old_folder, tmp_path):
    model = MTQNetForSpeechQualityAssessment.from_pretrained(old_folder)
    resaved = tmp_path / "resaved"
    model.save_pretrained(resaved)
    assert weight_names(resaved) == weight_names(old_folder)
    old_config = without_versions(json.loads((old_folder / "config.json").read_text()))
    new_config = without_versions(json.loads((resaved / "config.json").read_text()))
    assert old_config == new_config
    assert sorted(p.name for p in resaved.glob("*.py")) == sorted(CODE_FILES)


def test_old_folder_loads_by_its_own_code_without_the_package(old_folder, tmp_path):
    expected = json.loads((old_folder / "expected_scores.json").read_text())
    arrays = []
    for index, clip in enumerate(clips(expected)):
        arrays.append(str(tmp_path / f"clip{index}.npy"))
        np.save(arrays[-1], clip)
    code = f"""
    import json
    import numpy as np
    from transformers import AutoFeatureExtractor, AutoModel
    folder = {str(old_folder)!r}
    waveforms = [np.load(path) for path in {arrays!r}]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    print(json.dumps(model(**extractor(waveforms, sampling_rate=16000, return_tensors="pt")).logits.tolist()))
    """
    logits = json.loads(run_without_package(code, cwd=tmp_path).strip().splitlines()[-1])
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-5)


# -- heads and config must agree ---------------------------------------------------------------------------------------


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("changes, named", [
    ({"target_names": ["s_mos", "n_mos", "g_mos", "mos"], "target_activations": ["linear"] * 4,
      "target_ranges": [[1.0, 5.0]] * 4}, "heads.mos"),  # a head with no saved weights
    ({"target_names": ["s_mos", "n_mos"], "target_activations": ["linear"] * 2,
      "target_ranges": [[1.0, 5.0]] * 2}, "heads.g_mos"),  # a saved head the config does not name
    ({"auxiliary_target_names": [], "auxiliary_target_activations": [], "auxiliary_target_ranges": []},
     "auxiliary_heads.pesq"),
])
def test_heads_that_do_not_match_the_config_are_refused(old_folder, changes, named):
    edit_config(old_folder, **changes)
    with pytest.raises(ValueError, match=named.replace(".", r"\.")) as error:
        MTQNetForSpeechQualityAssessment.from_pretrained(old_folder)
    assert "ignore_mismatched_sizes=True" in str(error.value)
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        AutoModel.from_pretrained(old_folder)
    # Changing heads on purpose goes through the documented switch.
    model = MTQNetForSpeechQualityAssessment.from_pretrained(old_folder, ignore_mismatched_sizes=True)
    assert list(model.heads) == model.config.target_names


def test_matching_heads_load_with_loading_info(old_folder):
    model, info = MTQNetForSpeechQualityAssessment.from_pretrained(old_folder, output_loading_info=True)
    assert isinstance(model, MTQNetForSpeechQualityAssessment) and not info["missing_keys"]
