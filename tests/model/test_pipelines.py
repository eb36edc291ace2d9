"""Both pipelines, windowed long audio, and loading a saved folder by its own code in a package-free process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch
from transformers import pipeline

from modeling_mtqnet.model.pipeline_mtqnet import frame_score_curve, window_starts
from tests.helpers import build_model, noisy_tone, run_without_package

NAMES = ["s_mos", "n_mos", "g_mos"]


@pytest.fixture(scope="module")
def scorer(saved_model_dir):
    return pipeline("speech-quality-assessment", model=str(saved_model_dir))


def model_scores(model, extractor, audio, **kwargs) -> np.ndarray:
    with torch.no_grad():
        return model(**extractor(audio, return_tensors="pt", **kwargs)).logits[0].numpy()


def test_audio_classification_pipeline_returns_labelled_raw_scores(saved_model_dir, tiny_model, extractor):
    classifier = pipeline("audio-classification", model=str(saved_model_dir))
    audio = noisy_tone(1.0)
    result = classifier(audio)
    expected = model_scores(tiny_model, extractor, audio, sampling_rate=16000)
    assert sorted(item["label"] for item in result) == sorted(NAMES)
    by_name = {item["label"]: item["score"] for item in result}
    np.testing.assert_allclose([by_name[name] for name in NAMES], expected, atol=1e-5)  # no softmax applied
    assert sum(by_name.values()) > 1.5


def test_speech_quality_pipeline_on_a_file(scorer, tiny_model, extractor, tmp_path):
    audio = noisy_tone(1.2, seed=3)
    path = tmp_path / "clip.wav"
    soundfile.write(path, audio, 16000, subtype="FLOAT")
    result = scorer(str(path))
    np.testing.assert_allclose([result[name] for name in NAMES], model_scores(tiny_model, extractor, str(path)),
                               atol=1e-5)
    frames = 1 + audio.size // 256
    assert set(result["frame_scores"]) == set(NAMES)
    assert all(len(values) == frames for values in result["frame_scores"].values())
    assert result["frame_times"][:2] == pytest.approx([0.0, 0.016]) and len(result["frame_times"]) == frames
    # The utterance score is the mean of the frame curve (aligned fusion).
    assert np.mean(result["frame_scores"]["g_mos"]) == pytest.approx(result["g_mos"], abs=1e-5)
    assert "chunks" not in result


def test_speech_quality_pipeline_input_kinds_agree(scorer, tmp_path):
    audio_44k = noisy_tone(1.0, seed=4, rate=44100)
    path = tmp_path / "clip44k.wav"
    soundfile.write(path, audio_44k, 44100, subtype="FLOAT")
    from_file = scorer(str(path))["s_mos"]
    assert scorer(audio_44k, sampling_rate=44100)["s_mos"] == pytest.approx(from_file, abs=1e-5)
    assert scorer({"array": audio_44k, "sampling_rate": 44100})["s_mos"] == pytest.approx(from_file, abs=1e-5)
    assert scorer(torch.from_numpy(audio_44k), sampling_rate=44100)["s_mos"] == pytest.approx(from_file, abs=1e-5)
    with pytest.raises(ValueError, match="sampling_rate"):
        scorer(audio_44k)


def test_batched_list_matches_one_by_one(scorer):
    clips = [noisy_tone(seconds, seed=i) for i, seconds in enumerate((0.5, 1.3, 0.9, 2.0))]
    one_by_one = [scorer(clip, sampling_rate=16000) for clip in clips]
    batched = scorer(clips, sampling_rate=16000, batch_size=3)
    assert len(batched) == len(clips)
    for single, in_batch in zip(one_by_one, batched):
        for name in NAMES:
            assert in_batch[name] == pytest.approx(single[name], abs=1e-4)
        np.testing.assert_allclose(in_batch["frame_scores"]["n_mos"], single["frame_scores"]["n_mos"], atol=1e-4)


def test_window_starts_cover_the_clip():
    assert window_starts(100, 200, 50) == [0]
    assert window_starts(1000, 300, 250) == [0, 250, 500, 700]
    assert window_starts(1010, 300, 250) == [0, 250, 500, 710]  # no near-duplicate window at 500 and 710-ish
    starts = window_starts(16000 * 7 + 5, 16000 * 2, 16000 * 2 - 4000)
    assert starts[-1] + 32000 == 16000 * 7 + 5 and all(b - a <= 28000 for a, b in zip(starts, starts[1:]))


def test_long_audio_in_windows(scorer, tiny_model, extractor):
    audio = noisy_tone(7.0, seed=5)
    calls = []
    hook = scorer.model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(
        kwargs["input_values"].shape), with_kwargs=True)
    try:
        result = scorer(audio, sampling_rate=16000, chunk_length_s=2.0, stride_length_s=0.5, batch_size=2)
    finally:
        hook.remove()
    starts = window_starts(audio.size, 32000, 24000)
    assert starts == [0, 24000, 48000, 80000] and len(result["chunks"]) == len(starts)
    # Memory stays bounded: the model never sees more than one batch of windows.
    assert max(shape[1] for shape in calls) == 32000 and max(shape[0] for shape in calls) <= 2
    for chunk, start in zip(result["chunks"], starts):
        assert chunk["start_s"] == pytest.approx(start / 16000)
        alone = model_scores(tiny_model, extractor, audio[start : start + 32000], sampling_rate=16000)
        np.testing.assert_allclose([chunk[name] for name in NAMES], alone, atol=1e-4)
    assert result["s_mos"] == pytest.approx(np.mean([c["s_mos"] for c in result["chunks"]]), abs=1e-6)
    times = np.asarray(result["frame_times"])
    assert times[0] == 0.0 and times[-1] == pytest.approx((audio.size // 256) * 256 / 16000)
    assert np.all(np.diff(times) > 0) and len(result["frame_scores"]["g_mos"]) == times.size


def test_audio_over_the_one_pass_limit_is_windowed_unless_one_pass_is_asked_for(saved_model_dir):
    scorer = pipeline("speech-quality-assessment", model=str(saved_model_dir))
    scorer.feature_extractor.max_duration_s = 1.0
    windowed = scorer(noisy_tone(2.0), sampling_rate=16000)
    assert max(chunk["end_s"] - chunk["start_s"] for chunk in windowed["chunks"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="too long for one pass.*chunk_length_s"):
        scorer(noisy_tone(2.0), sampling_rate=16000, chunk_length_s=0)
    with pytest.raises(ValueError, match="chunk_length_s 1.5 is longer than this model scores in one pass"):
        scorer(noisy_tone(2.0), sampling_rate=16000, chunk_length_s=1.5)
    assert "chunks" in scorer(noisy_tone(2.0), sampling_rate=16000, chunk_length_s=1.0)


def test_a_file_is_read_in_blocks_to_the_same_scores(scorer, tmp_path):
    from modeling_mtqnet.model import feature_extraction_mtqnet

    audio = noisy_tone(7.3, seed=8)
    path = tmp_path / "long.wav"
    soundfile.write(path, np.stack([audio, 0.5 * audio], axis=1), 44100)  # stereo at another rate: resampled
    blocks = []
    original = feature_extraction_mtqnet.stream_audio

    def small_blocks(source, rate, block_s=10.0):
        for block in original(source, rate, block_s=0.37):
            blocks.append(block.size)
            yield block

    from modeling_mtqnet.model import pipeline_mtqnet

    pipeline_mtqnet.stream_audio, saved = small_blocks, pipeline_mtqnet.stream_audio
    pipeline_mtqnet.STREAM_ABOVE_S, saved_above = 1.0, pipeline_mtqnet.STREAM_ABOVE_S  # stream this short file too
    try:
        streamed = scorer(str(path), chunk_length_s=2.0)
    finally:
        pipeline_mtqnet.stream_audio, pipeline_mtqnet.STREAM_ABOVE_S = saved, saved_above
    whole = scorer(feature_extraction_mtqnet.load_audio(str(path), None, 16000), sampling_rate=16000,
                   chunk_length_s=2.0)
    # Read twice (checks, then windows), a block at a time: never the whole file.
    assert len(blocks) == 2 * len(list(original(str(path), 16000, block_s=0.37))) > 10
    assert max(blocks) <= int(0.37 * 16000) + 64
    assert [c["start_s"] for c in streamed["chunks"]] == [c["start_s"] for c in whole["chunks"]]
    for name in NAMES:
        assert streamed[name] == pytest.approx(whole[name], abs=1e-4)


def test_silent_windows_are_skipped_but_a_silent_file_is_an_error(scorer):
    audio = np.concatenate([noisy_tone(1.0), np.zeros(32000, np.float32), noisy_tone(1.0, seed=2)])
    result = scorer(audio, sampling_rate=16000, chunk_length_s=1.0, stride_length_s=0.0)
    assert [c["start_s"] for c in result["chunks"]] == [0.0, 3.0]
    with pytest.raises(ValueError, match="silent"):
        scorer(np.zeros(16000, np.float32), sampling_rate=16000)


def test_time_fusion_frame_curve_reads_left_to_right(tmp_path):
    model = build_model(fusion_mode="time")
    model.save_pretrained(tmp_path)
    from modeling_mtqnet import MTQNetFeatureExtractor

    MTQNetFeatureExtractor.from_model_config(model.config).save_pretrained(tmp_path)
    result = pipeline("speech-quality-assessment", model=str(tmp_path))(noisy_tone(1.0), sampling_rate=16000)
    assert len(result["frame_times"]) == 1 + 16000 // 256 and np.all(np.diff(result["frame_times"]) > 0)


def test_frame_score_curve_averages_sections():
    times = np.array([0.0, 0.5, 1.0, 0.0, 0.5, 1.0, 0.25, 0.75, 0.0])
    sections = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0])
    mask = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0])
    scores = np.array([[1.0], [1.0], [1.0], [3.0], [3.0], [3.0], [2.0], [4.0], [99.0]])
    grid, curve = frame_score_curve(scores, mask, times, sections)
    np.testing.assert_allclose(grid, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(curve[:, 0], [(1 + 3 + 2) / 3, (1 + 3 + 3) / 3, (1 + 3 + 4) / 3])


def test_folder_loads_by_its_own_code_without_the_package(saved_model_dir, tiny_model, extractor, tmp_path):
    audio = noisy_tone(1.1, seed=9)
    path = tmp_path / "clip.wav"
    soundfile.write(path, audio, 16000, subtype="FLOAT")
    expected = model_scores(tiny_model, extractor, str(path))
    code = f"""
    import importlib, json
    try:
        importlib.import_module("modeling_mtqnet")
        raise SystemExit("the package must not be importable here")
    except ImportError:
        pass
    from transformers import AutoFeatureExtractor, AutoModel, pipeline
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    folder, path = {str(saved_model_dir)!r}, {str(path)!r}
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    # The folder's own wavlm_attention.py travels with it and is used.
    attention = model.mtqnet.ssl_encoder.encoder.layers[0].attention
    assert type(attention).__name__ == "BlockwiseWavLMAttention", type(attention)
    assert type(attention).__module__.startswith("transformers_modules"), type(attention).__module__
    auto = model(**extractor(path, return_tensors="pt")).logits[0].tolist()
    classifier = pipeline("audio-classification", model=folder, trust_remote_code=True)
    labelled = {{item["label"]: item["score"] for item in classifier(extractor(path)["input_values"][0])}}
    pipeline_class = get_class_from_dynamic_module("pipeline_mtqnet.SpeechQualityAssessmentPipeline", folder)
    scorer = pipeline("audio-classification", model=folder, pipeline_class=pipeline_class, trust_remote_code=True)
    print(json.dumps({{"auto": auto, "labelled": labelled, "pipeline": scorer(path)}}))
    """
    output = json.loads(run_without_package(code, cwd=tmp_path).strip().splitlines()[-1])
    np.testing.assert_allclose(output["auto"], expected, atol=1e-6)
    np.testing.assert_allclose([output["labelled"][name] for name in NAMES], expected, atol=1e-5)
    np.testing.assert_allclose([output["pipeline"][name] for name in NAMES], expected, atol=1e-5)


def test_long_audio_is_windowed_by_default(scorer, monkeypatch):
    from modeling_mtqnet.model import pipeline_mtqnet

    monkeypatch.setattr(pipeline_mtqnet, "AUTO_CHUNK_ABOVE_S", 3.0)
    monkeypatch.setattr(pipeline_mtqnet, "AUTO_CHUNK_LENGTH_S", 1.0)
    calls = []
    hook = scorer.model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(
        kwargs["input_values"].shape[1]), with_kwargs=True)
    try:
        long = scorer(noisy_tone(4.0, seed=3), sampling_rate=16000)
        short = scorer(noisy_tone(2.5, seed=3), sampling_rate=16000)
        forced = scorer(noisy_tone(4.0, seed=3), sampling_rate=16000, chunk_length_s=0)  # one pass on request
    finally:
        hook.remove()
    assert len(long["chunks"]) > 1 and max(calls[: len(long["chunks"])]) == 16000
    assert "chunks" not in short and "chunks" not in forced and calls[-1] == 64000


def test_near_silent_input_is_refused_and_near_silent_windows_skipped(scorer):
    dither = np.random.default_rng(0).choice(np.array([-1.0, 1.0], np.float32), 16000) / 32768
    with pytest.raises(ValueError, match="near-silent"):
        scorer(dither, sampling_rate=16000)
    one_sample = np.zeros(16000, np.float32)
    one_sample[100] = 1 / 32768
    with pytest.raises(ValueError, match="near-silent"):
        scorer(one_sample, sampling_rate=16000)
    audio = np.concatenate([noisy_tone(1.0), np.tile(dither, 2), noisy_tone(1.0, seed=2)])
    result = scorer(audio, sampling_rate=16000, chunk_length_s=1.0, stride_length_s=0.0)
    assert [c["start_s"] for c in result["chunks"]] == [0.0, 3.0]


def test_a_flat_list_of_samples_is_one_clip(scorer):
    audio = noisy_tone(1.0, seed=6)
    as_list = scorer(audio.tolist(), sampling_rate=16000)
    as_array = scorer(audio, sampling_rate=16000)
    assert as_list["s_mos"] == pytest.approx(as_array["s_mos"], abs=1e-6)


def test_a_wav_cut_short_is_scored_with_a_warning_through_the_pipeline(scorer, tmp_path):
    from modeling_mtqnet.model.feature_extraction_mtqnet import TruncatedAudioWarning

    whole, cut = tmp_path / "whole.wav", tmp_path / "cut.wav"
    soundfile.write(whole, noisy_tone(1.0, seed=4), 16000, subtype="PCM_16")
    cut.write_bytes(whole.read_bytes()[:-6400])
    with pytest.warns(TruncatedAudioWarning, match="6400 more bytes"):
        result = scorer(str(cut))
    assert result["frame_times"][-1] == pytest.approx(0.8, abs=0.02)
