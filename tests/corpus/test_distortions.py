"""Distortion systems (reverb, bandlimit, clipping, packet_loss): length and alignment, determinism, what each does to
the signal (decay time, stop band, threshold, lost frames), and corpora of the older systems left unchanged."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy.signal import fftconvolve, welch

from modeling_mtqnet.corpus import builder, signals, systems
from modeling_mtqnet.corpus.systems import DISTORTIONS, SYSTEM_PARAMETERS, SYSTEMS, apply_system, system_status
from tests.corpus.test_builder import _pinned_inputs

RATE = 16000
FRAME = 320  # 20 ms


def _speech(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Synthetic speech with a little noise (no exact zeros), peak about 0.3."""
    rng = np.random.default_rng(seed)
    speech = signals.synthetic_speech(seconds, rng).astype(np.float64) * 0.6
    return speech + 1e-3 * rng.standard_normal(speech.size)


def _apply(name: str, signal: np.ndarray, params: dict) -> np.ndarray:
    return apply_system(name, signal, np.zeros_like(signal), params)


def _lag(signal: np.ndarray, reference: np.ndarray, max_lag: int = 160) -> int:
    """Lag (samples) of the cross-correlation peak, by direct dot products."""
    core = reference[max_lag:-max_lag]
    scores = [np.dot(signal[max_lag + lag: max_lag + lag + core.size], core) for lag in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


@pytest.mark.parametrize("name", DISTORTIONS)
def test_distortions_are_in_process_systems_that_always_run(name):
    status = system_status(name)
    assert status.available and status.kind == "distortion" and "in process" in status.backend
    assert systems.IN_PROCESS_DELAYS[name] == 0 and systems.calibrate_delay(name, "") == 0
    assert builder._resolve_systems(["distortions"], {}) == list(DISTORTIONS)


@pytest.mark.parametrize("name", DISTORTIONS)
def test_every_choice_keeps_length_and_alignment_and_changes_the_signal(name):
    speech = _speech()
    for params in SYSTEM_PARAMETERS[name]:
        output = _apply(name, speech, params)
        assert output.shape == speech.shape and np.all(np.isfinite(output)), params
        assert np.max(np.abs(output - speech)) > 1e-3, f"{name} {params} left the signal unchanged"
        assert _lag(output, speech) == 0, (params, _lag(output, speech))
        assert np.max(np.abs(output)) <= signals.PEAK_LIMIT


@pytest.mark.parametrize("name, seed_key", [("reverb", "room"), ("packet_loss", "pattern"), ("bandlimit", None),
                                            ("clipping", None)])
def test_same_parameters_same_output_other_room_or_pattern_differs(name, seed_key):
    speech = _speech(seconds=6.0)
    params = SYSTEM_PARAMETERS[name][-1]
    first = _apply(name, speech, params)
    np.random.seed(1)  # the global generator plays no part
    assert np.array_equal(first, _apply(name, speech.copy(), dict(params)))
    if seed_key is not None:
        other = _apply(name, speech, {**params, seed_key: (params[seed_key] + 1) % 4})
        assert not np.array_equal(first, other)


# -- reverb ---------------------------------------------------------------------------------------------------------


def _decay_time(response: np.ndarray) -> float:
    """RT60 from Schroeder's backward integration: the -5..-25 dB slope of the energy decay curve, extrapolated."""
    energy = np.cumsum(response[::-1] ** 2)[::-1]
    curve_db = 10 * np.log10(energy / energy[0])
    used = (curve_db <= -5) & (curve_db >= -25)
    slope_db_per_s = np.polyfit(np.flatnonzero(used) / RATE, curve_db[used], 1)[0]
    return -60.0 / slope_db_per_s


@pytest.mark.parametrize("params", SYSTEM_PARAMETERS["reverb"][::3], ids=systems.params_key)
def test_simulated_room_decays_at_its_rt60_with_its_direct_to_reverberant_ratio(params):
    rt60, drr_db, room = params["rt60"], params["drr_db"], params["room"]
    response = signals.simulated_rir(rt60, drr_db, room)
    assert response[0] == 1.0 and np.all(response[1:int(0.002 * RATE)] == 0)  # direct path, then a gap
    assert abs(_decay_time(response) / rt60 - 1) < 0.25, (_decay_time(response), rt60)
    assert 10 * np.log10(1.0 / np.sum(response[1:] ** 2)) == pytest.approx(drr_db, abs=0.01)
    assert np.array_equal(response, signals.simulated_rir(rt60, drr_db, room))
    # The reverb system is this response applied (short and quiet enough here for the peak limit to stay off).
    speech = _speech(seconds=2.0) * 0.5
    assert np.allclose(_apply("reverb", speech, params), fftconvolve(speech, response)[: speech.size])


def test_longer_rt60_means_longer_decay_and_bad_rt60_is_refused():
    times = [_decay_time(signals.simulated_rir(rt60, 0, 0)) for rt60 in (0.3, 0.5, 0.8, 1.2)]
    assert times == sorted(times) and times[-1] > 3 * times[0]
    with pytest.raises(signals.CorpusError, match="rt60"):
        signals.simulated_rir(0, 0, 0)


# -- bandlimit ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", SYSTEM_PARAMETERS["bandlimit"], ids=systems.params_key)
def test_bandlimit_removes_what_lies_outside_its_band(params):
    noise = 0.1 * np.random.default_rng(3).standard_normal(10 * RATE)
    frequencies, before = welch(noise, RATE, nperseg=1024)
    _, after = welch(_apply("bandlimit", noise, params), RATE, nperseg=1024)
    gain_db = 10 * np.log10(after / before)
    low, high = params.get("low_hz", 0), params["high_hz"]
    passband = (frequencies >= max(low * 2, 500)) & (frequencies <= high * 0.8)
    assert np.all(np.abs(gain_db[passband]) < 1.0)  # the band itself is kept
    well_above = (frequencies >= min(1.5 * high, 7600)) & (frequencies < 7950)
    assert well_above.any() and np.max(gain_db[well_above]) < -30, np.max(gain_db[well_above])
    if low:
        assert np.max(gain_db[(frequencies > 0) & (frequencies <= low / 2.5)]) < -30


# -- clipping -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", SYSTEM_PARAMETERS["clipping"], ids=systems.params_key)
def test_clipping_cuts_at_its_threshold_and_touches_nothing_below(params):
    speech = _speech()
    threshold = np.max(np.abs(speech)) * 10 ** (-params["clip_db"] / 20)
    output = _apply("clipping", speech, params)
    assert np.max(np.abs(output)) == pytest.approx(threshold, rel=1e-12)
    below = np.abs(speech) <= threshold
    assert np.array_equal(output[below], speech[below])  # no gain change
    assert (~below).sum() > 10 and np.allclose(output[~below], np.sign(speech[~below]) * threshold)


# -- packet loss ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", SYSTEM_PARAMETERS["packet_loss"], ids=systems.params_key)
def test_packet_loss_zeroes_its_share_of_frames_in_bursts_and_leaves_the_rest(params):
    noise = 0.1 * np.random.default_rng(4).standard_normal(300 * RATE)  # no zero sample: a zero is a loss
    output = _apply("packet_loss", noise, params)
    frames_in, frames_out = noise.reshape(-1, FRAME), output.reshape(-1, FRAME)
    fade = systems.PACKET_FADE
    lost = np.all(frames_out[:, fade:-fade] == 0, axis=1)
    kept = np.all(frames_out == frames_in, axis=1)
    assert np.all(lost ^ kept)  # every frame is either dropped or untouched
    assert np.all(np.abs(frames_out[lost]) <= np.abs(frames_in[lost]))  # the 2 ms fades only lower the edges
    rate = params["loss_rate"]
    assert abs(lost.mean() - rate) < 0.2 * rate, (lost.mean(), rate)
    edges = np.diff(np.concatenate([[0], lost.astype(np.int8), [0]]))
    mean_burst = lost.sum() / np.sum(edges == 1)
    assert 1.5 < mean_burst < 2.5  # bursty (independent losses would average 1 / (1 - rate) frames)
    assert np.array_equal(lost, systems.lost_frames(lost.size, rate, params["pattern"]))


def test_packet_loss_fades_at_gap_edges_instead_of_jumping():
    noise = 0.1 * np.random.default_rng(5).standard_normal(60 * RATE)
    params = {"loss_rate": 0.2, "pattern": 1}
    output = _apply("packet_loss", noise, params)
    lost = systems.lost_frames(noise.size // FRAME, 0.2, 1)
    start = (int(np.flatnonzero(lost[1:] & ~lost[:-1])[0]) + 1) * FRAME  # a gap after a kept frame
    ramp = output[start:start + systems.PACKET_FADE] / noise[start:start + systems.PACKET_FADE]
    assert np.all(np.diff(ramp) < 0) and ramp[0] > 0.95 and ramp[-1] < 0.05


# -- corpora built before the distortions ---------------------------------------------------------------------------

OLD_SYSTEMS = ("none", "noisereduce", "sox_noisered", "ffmpeg_afftdn", "rnnoise", "opus", "gsm", "mp3")
OLD_PARAMETERS = {
    "none": [{}], "noisereduce": [{"prop_decrease": 0.7}, {"prop_decrease": 1.0}],
    "sox_noisered": [{"amount": 0.1}, {"amount": 0.2}, {"amount": 0.3}], "ffmpeg_afftdn": [{"nr": 12}, {"nr": 24}],
    "rnnoise": [{}], "opus": [{"kbps": 6}, {"kbps": 8}, {"kbps": 12}, {"kbps": 16}, {"kbps": 24}], "gsm": [{}],
    "mp3": [{"kbps": 16}, {"kbps": 24}, {"kbps": 32}, {"kbps": 48}],
}
# What the builder drew before the distortions existed, for `_OLD_CORPUS` (systems stubbed: every one available,
# output = mix / 2): (split, system, system_params) per utterance, and a digest of every file but corpus_info.json.
_OLD_CORPUS = dict(noises=["white", "pink"], snrs=[5, 15], systems=list(OLD_SYSTEMS[:6]), test_systems=["gsm", "mp3"],
                   test_fraction=0.25, count=16, seed=3)
_OLD_DRAWS = [
    ("train", "none", ""), ("train", "rnnoise", ""), ("train", "opus", "kbps=6"), ("test", "mp3", "kbps=16"),
    ("train", "sox_noisered", "amount=0.3"), ("train", "ffmpeg_afftdn", "nr=24"),
    ("train", "noisereduce", "prop_decrease=0.7"), ("test", "gsm", ""), ("train", "opus", "kbps=8"),
    ("train", "none", ""), ("train", "sox_noisered", "amount=0.1"), ("test", "gsm", ""),
    ("train", "ffmpeg_afftdn", "nr=24"), ("train", "noisereduce", "prop_decrease=1.0"), ("train", "rnnoise", ""),
    ("test", "mp3", "kbps=32"),
]
_OLD_DIGEST = "a965bf003df7a8630453aee2f3624d8edcbe625e12886f043cc30ca67375a011"


def test_older_systems_keep_their_order_and_parameter_choices():
    assert SYSTEMS[: len(OLD_SYSTEMS)] == OLD_SYSTEMS and SYSTEMS[len(OLD_SYSTEMS):] == DISTORTIONS
    assert {name: SYSTEM_PARAMETERS[name] for name in OLD_SYSTEMS} == OLD_PARAMETERS


def _stub_systems(monkeypatch) -> None:
    def status(name):
        kind = "none" if name == "none" else "enhancement" if name in systems.ENHANCERS else "codec"
        return systems.SystemStatus(name, kind, True, "stub")

    monkeypatch.setattr(builder, "system_status", status)
    monkeypatch.setattr(builder, "apply_system", lambda name, mix, noise, params: mix * 0.5)
    monkeypatch.setattr(builder, "calibrate_delay", lambda name, key: 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_corpus_of_the_older_systems_is_the_same_as_before_the_distortions(tmp_path, monkeypatch, workers):
    _stub_systems(monkeypatch)
    clean, _ = _pinned_inputs(tmp_path / "in")
    output = tmp_path / "out"
    report = builder.build_corpus(clean, output, progress=False, workers=workers, **_OLD_CORPUS)
    assert [(row["split"], row["system"], row["system_params"]) for row in report.rows] == _OLD_DRAWS
    digest = hashlib.sha256()
    for path in sorted(output.rglob("*")):
        if path.is_file() and path.name != "corpus_info.json":
            digest.update(path.relative_to(output).as_posix().encode() + b"\0" + path.read_bytes())
    assert digest.hexdigest() == _OLD_DIGEST


def test_a_corpus_without_distortions_does_not_depend_on_their_existence(tmp_path, monkeypatch):
    """`--systems none opus` draws from the same pool whether or not SYSTEMS lists the distortions."""
    _stub_systems(monkeypatch)
    clean, _ = _pinned_inputs(tmp_path / "in")
    settings = {**_OLD_CORPUS, "systems": ["none", "opus"], "test_systems": ["gsm"]}
    now = builder.build_corpus(clean, tmp_path / "now", progress=False, workers=1, **settings)
    monkeypatch.setattr(builder, "SYSTEMS", OLD_SYSTEMS)  # as before the distortions were added
    builder.build_corpus(clean, tmp_path / "before", progress=False, workers=1, **settings)
    assert {row["system"] for row in now.rows} == {"none", "opus", "gsm"}
    snapshots = [{path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*"))
                  if path.is_file() and path.name != "corpus_info.json"} for root in (tmp_path / "now",
                                                                                     tmp_path / "before")]
    assert snapshots[0] == snapshots[1]
    assert len(snapshots[0]) == 2 + 3 * 16  # config, manifest, 16 x (noisy, clean, meta)
