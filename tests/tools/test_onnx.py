"""ONNX export: parity with PyTorch at several lengths from one file (dynamic time axis), both fusion modes with the
tiny WavLM, equal-length batches, no auxiliary outputs, the CLI, and the torch-free scoring snippet of docs/usage.md."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_mtqnet import MTQNetFeatureExtractor
from modeling_mtqnet.tools.export_onnx import INPUT_NAME, OUTPUT_NAMES, MTQNetOnnxGraph, export, main
from tests.helpers import build_model, noisy_tone

pytest.importorskip("onnx", reason="the ONNX exporter needs the onnx package: pip install onnx")
onnxruntime = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]
SECONDS = (0.5, 1.3, 3.0)  # 8000 / 20800 / 48000 samples: the sinc branch pads (first two) and crops (last) its end
ATOL = 1e-4
# fusion mode, tiny WavLM, the Distill-MOS encoder (random weights) or no SSL encoder
VARIANTS = {"time": {"fusion_mode": "time"}, "aligned": {"fusion_mode": "aligned"},
            "time-no-ssl": {"fusion_mode": "time", "ssl_config": None},
            "aligned-distillmos": {"fusion_mode": "aligned", "ssl_config": {"model_type": "distillmos_encoder"}}}


def peak_normalised(seconds: float, seed: int) -> np.ndarray:
    clip = noisy_tone(seconds, snr_db=5.0, seed=seed)
    return (clip / np.max(np.abs(clip))).astype(np.float32)


def session_for(path: Path):
    """One thread, no spin-waiting: onnxruntime's idle threads would otherwise slow the PyTorch runs beside them."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module", params=list(VARIANTS))
def exported(request, tmp_path_factory):
    """(model, ONNX path): one export per variant, traced on a 1 s clip; the model keeps its auxiliary heads until
    `export` drops them."""
    model = build_model(**VARIANTS[request.param])
    assert len(model.auxiliary_heads) == 3
    path = export(model, tmp_path_factory.mktemp(f"onnx_{request.param}") / "model.onnx")
    return model, path


def test_parity_at_several_lengths_from_one_file(exported):
    model, path = exported
    session = session_for(path)
    frame_counts = set()
    for seed, seconds in enumerate(SECONDS):
        waveform = peak_normalised(seconds, seed)
        with torch.no_grad():
            reference = model(torch.from_numpy(waveform)[None])
        utterance, frames = session.run(list(OUTPUT_NAMES), {INPUT_NAME: waveform[None]})
        assert frames.shape == tuple(reference.frame_scores.shape)
        utterance_diff = np.abs(utterance - reference.logits.numpy()).max()
        frame_diff = np.abs(frames - reference.frame_scores.numpy()).max()
        assert utterance_diff <= ATOL and frame_diff <= ATOL, (seconds, utterance_diff, frame_diff)
        # The tolerance is far below what the scores vary by, so a wrong graph could not pass by accident.
        assert reference.frame_scores.std() > 10 * ATOL
        frame_counts.add(frames.shape[1])
    assert len(frame_counts) == len(SECONDS)


def test_equal_length_clips_batch(exported):
    model, path = exported
    clips = [peak_normalised(1.1, seed) for seed in (7, 8)]
    utterance, frames = session_for(path).run(list(OUTPUT_NAMES), {INPUT_NAME: np.stack(clips)})
    with torch.no_grad():
        references = [model(torch.from_numpy(clip)[None]) for clip in clips]
    for index, reference in enumerate(references):
        assert np.abs(utterance[index] - reference.logits[0].numpy()).max() <= ATOL
        assert np.abs(frames[index] - reference.frame_scores[0].numpy()).max() <= ATOL
    assert np.abs(utterance[0] - utterance[1]).max() > 10 * ATOL  # the two rows really are different clips


def test_graph_has_only_the_primary_outputs(exported):
    import onnx

    model, path = exported
    proto = onnx.load(str(path))
    shapes = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in list(proto.graph.input) + list(proto.graph.output)
    }
    assert shapes == {
        INPUT_NAME: ["batch", "samples"],
        "utterance_scores": ["batch", 3],
        "frame_scores": ["batch", "frames", 3],
    }
    assert not any("auxiliary" in tensor.name for tensor in proto.graph.initializer)
    assert b"auxiliary_heads" not in path.read_bytes()
    metadata = session_for(path).get_modelmeta().custom_metadata_map
    assert json.loads(metadata["target_names"]) == ["s_mos", "n_mos", "g_mos"] == model.config.target_names
    assert int(metadata["sampling_rate"]) == 16000 and metadata["fusion_mode"] == model.config.fusion_mode


def test_dft_conv_equals_the_spectral_branch():
    """The one piece the export re-expresses: |STFT| as a conv with windowed DFT kernels."""
    model = build_model(ssl_config=None)
    waveform = torch.from_numpy(peak_normalised(0.77, 3))[None]
    with torch.no_grad():
        ours = MTQNetOnnxGraph(model).spectral_magnitude(waveform)
        theirs = model.mtqnet.spectral(waveform, torch.tensor([waveform.shape[1]]))
    assert ours.shape == theirs.shape == (1, 1 + waveform.shape[1] // 256, 257)
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory):
    """The CLI run on a saved tiny (aligned, WavLM) folder: (model, folder, ONNX path, stdout)."""
    folder = tmp_path_factory.mktemp("onnx_cli_model")
    model = build_model()
    model.save_pretrained(folder)
    MTQNetFeatureExtractor.from_model_config(model.config).save_pretrained(folder)
    output = tmp_path_factory.mktemp("onnx_cli_out") / "sub" / "mtqnet.onnx"
    return model, folder, output


def test_cli_writes_a_verified_file(cli_export, capsys):
    model, folder, output = cli_export
    assert main([str(folder), str(output)]) == output
    printed = capsys.readouterr().out
    assert output.is_file() and output.stat().st_size > 10_000
    assert "max abs diff" in printed
    diffs = [float(value) for value in re.findall(r"(?:utterance|frame) ([0-9.e+-]+)", printed)]
    assert len(diffs) == 2 and max(diffs) <= ATOL
    outputs = [o.name for o in session_for(output).get_outputs()]
    assert outputs == list(OUTPUT_NAMES)


@pytest.mark.parametrize("problem", ["missing", "no_config", "other_model", "no_weights"])
def test_cli_refuses_a_bad_model_dir(problem, tmp_path, capsys):
    folder = tmp_path / "model"
    if problem != "missing":
        folder.mkdir()
    if problem == "other_model":
        (folder / "config.json").write_text(json.dumps({"model_type": "wavlm"}))
    if problem == "no_weights":
        build_model(ssl_config=None).config.save_pretrained(folder)
    with pytest.raises(SystemExit) as raised:
        main([str(folder), str(tmp_path / "out.onnx")])
    assert raised.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("export_onnx: error: MODEL_DIR") and str(folder) in message
    expected = {"missing": "does not exist", "no_config": "no config.json", "other_model": "'wavlm' model, not an MTQ-Net",
                "no_weights": "cannot load the model"}[problem]
    assert expected in message
    assert not (tmp_path / "out.onnx").exists()


def test_cli_as_a_module_refuses_a_bad_model_dir(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "modeling_mtqnet.tools.export_onnx", str(tmp_path / "nowhere"), str(tmp_path / "out.onnx")],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert completed.returncode == 2
    assert f"MODEL_DIR {tmp_path / 'nowhere'} does not exist" in completed.stderr
    assert "Traceback" not in completed.stderr


BLOCK_TORCH = textwrap.dedent(
    """
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "modeling_mtqnet", "transformers"):
                raise ImportError(name + " is blocked in this process")
            return None
    sys.meta_path.insert(0, _Block())
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("torch could be imported")
    """
)


def snippet_from_notes() -> str:
    text = (REPO / "docs" / "usage.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- torch-free-snippet -->\s*```python\n(.*?)```", text, flags=re.S)
    assert match, "docs/usage.md lost its torch-free snippet"
    return match.group(1)


def test_torch_free_snippet_gives_the_same_scores(cli_export, tmp_path):
    """The snippet of docs/usage.md, verbatim but for its two paths, in a process where torch cannot be imported,
    on a stereo 22.05 kHz file: the same scores as the feature extractor + PyTorch model."""
    import soundfile

    model, folder, onnx_path = cli_export
    if not onnx_path.exists():
        main([str(folder), str(onnx_path), "--no-verify"])
    left, right = noisy_tone(1.7, snr_db=3.0, seed=11, rate=22050), noisy_tone(1.7, snr_db=15.0, seed=12, rate=22050)
    wav = tmp_path / "stereo.wav"
    soundfile.write(wav, np.stack([left, 0.5 * right], axis=1), 22050)

    snippet = snippet_from_notes()
    assert snippet.count('"mtqnet.onnx"') == 1 and snippet.count('"recording.wav"') == 1
    code = snippet.replace('"mtqnet.onnx"', repr(str(onnx_path))).replace('"recording.wav"', repr(str(wav)))
    frames_file = tmp_path / "frames.npy"
    code += (
        f"\nnp.save({str(frames_file)!r}, frame_scores)\nprint('RESULT', json.dumps(scores))\n"
        "assert not any(name.split('.')[0] in ('torch', 'transformers') for name in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    scores = json.loads(completed.stdout.split("RESULT", 1)[1])

    features = MTQNetFeatureExtractor.from_model_config(model.config)(str(wav), return_tensors="pt")
    with torch.no_grad():
        reference = model(**features)
    assert list(scores) == model.config.target_names
    assert np.abs(np.array(list(scores.values())) - reference.logits[0].numpy()).max() <= ATOL
    frames = np.load(frames_file)
    assert frames.shape == tuple(reference.frame_scores.shape[1:])
    assert np.abs(frames - reference.frame_scores[0].numpy()).max() <= ATOL
