"""CPU inference speed and memory of MTQ-Net, with the trunk's time separated from the SSL encoder's.

For every (preset, batch size, clip duration) the script starts a fresh Python process that builds the inference
model (random weights, auxiliary heads dropped, eval mode), runs one warm-up forward and a few timed forwards under
`torch.inference_mode()`, and reports the medians:

- RTF total: wall seconds of `model(input_values, attention_mask)` per second of audio (batch x duration);
- RTF SSL: the same for the summed calls of `model.mtqnet.ssl_encoder` (timed with forward pre/post hooks; a
  group-norm encoder such as WavLM-base is called once per clip of the batch);
- RTF trunk: total minus SSL (STFT, sinc filterbank, CNN, SSL projection and fusion, BLSTM, dense, attention heads);
- trunk/SSL: trunk time over SSL time; the aim is <= 25% at 10 s;
- peak MB: peak resident set size during the warm-up and timed forwards, minus the resident set size after the
  model and the inputs were built (the peak is reset through /proc/self/clear_refs; without it, `ru_maxrss`).

A second table splits the trunk's time among its modules (forward hooks as well).

`--paths bounded reference` measures both ways of computing the same scores side by side: `bounded` (the package's
default) runs a WavLM encoder's attention block-wise and the CNN in passes of whole clips, so that memory grows
linearly with the clip and is bounded per pass; `reference` uses transformers' own WavLM attention (a T x T bias and
T x T scores per head) and the whole batch in one CNN pass, as the package did before.

By default the workers run with glibc's mmap and trim thresholds raised (`--malloc keep`): freed tensor memory is
reused instead of being unmapped and faulted in again on the next forward. On a VM with expensive page faults this
keeps timings steady; `--malloc default` measures the allocator as a user gets it.

Run from the repository root:
    .venv/bin/python benchmarks/inference_speed.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLING_RATE = 16000
OVERHEAD_AIM = 0.25
# glibc tunables that keep freed memory in the process for reuse instead of returning it to the kernel (mmap/munmap
# of every large tensor). On a VM whose page faults are expensive this removes most of the run-to-run noise.
MALLOC_KEEP_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**36)}
AIM_DURATION_S = 10.0
DTYPE_NAMES = ("fp32", "bf16")
PATH_NAMES = ("bounded", "reference")

# Both presets get a WavLM-base-sized encoder (768-d, 12 layers, group norm); "small" keeps its aligned fusion and
# its own 128-d SSL projection.
PRESET_OVERRIDES: dict[str, dict[str, Any]] = {
    "small": {"ssl_config": {"model_type": "wavlm"}, "fusion_mode": "aligned"},
    "mosa-net": {"ssl_config": {"model_type": "wavlm"}, "fusion_mode": "time"},
}

# Trunk modules timed separately: name -> attribute paths from the full model (all summed under the name).
TRUNK_COMPONENTS: dict[str, tuple[str, ...]] = {
    "stft": ("mtqnet.spectral",),
    "sinc": ("mtqnet.sinc",),
    "cnn": ("mtqnet.cnn",),
    "ssl proj": ("mtqnet.ssl_projection",),
    "blstm": ("mtqnet.blstm",),
    "dense": ("mtqnet.dense",),
    "heads": ("heads",),
}


@dataclass(frozen=True)
class BenchmarkCase:
    preset: str
    batch_size: int
    duration_s: float
    repeats: int
    time_budget_s: float
    threads: int
    seed: int
    dtype: str = "fp32"
    paths: str = "bounded"

    @property
    def audio_seconds(self) -> float:
        return self.batch_size * self.duration_s


@dataclass
class CaseResult:
    case: BenchmarkCase
    total_s: float = float("nan")
    ssl_s: float = float("nan")
    trunk_s: float = float("nan")
    peak_mb: float = float("nan")
    baseline_mb: float = float("nan")
    timed_runs: int = 0
    total_range_s: tuple[float, float] = (float("nan"), float("nan"))  # fastest and slowest timed forward
    components_s: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def rtf(self, seconds: float) -> float:
        return seconds / self.case.audio_seconds

    @property
    def overhead(self) -> float:
        return self.trunk_s / self.ssl_s if self.ssl_s > 0 else float("nan")


# ----------------------------------------------------------------------------------------------------------------------
# Worker: one configuration, in its own process
# ----------------------------------------------------------------------------------------------------------------------


class CallTimer:
    """Sums the wall time of the forward calls of one or more modules (forward pre-hook starts, forward hook stops)."""

    def __init__(self, modules: list[Any]) -> None:
        self.total_s = 0.0
        self._start = 0.0
        self._handles = []
        for module in modules:
            self._handles.append(module.register_forward_pre_hook(self._before))
            self._handles.append(module.register_forward_hook(self._after))

    def _before(self, module: Any, args: Any) -> None:
        self._start = time.perf_counter()

    def _after(self, module: Any, args: Any, output: Any) -> None:
        self.total_s += time.perf_counter() - self._start

    def reset(self) -> None:
        self.total_s = 0.0


def resolve_module(root: Any, path: str) -> Any:
    """`resolve_module(model, "mtqnet.cnn")` -> model.mtqnet.cnn, or None when a part is missing or None."""
    module = root
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def component_timers(model: Any) -> dict[str, CallTimer]:
    """One timer per trunk component present in the model (heads: every primary head, summed)."""
    timers = {}
    for name, paths in TRUNK_COMPONENTS.items():
        modules = [resolve_module(model, path) for path in paths]
        modules = [m for m in modules if m is not None]
        if name == "heads":
            modules = [head for container in modules for head in container.values()]
        if modules:
            timers[name] = CallTimer(modules)
    return timers


def build_model(preset: str, dtype: str = "fp32") -> Any:
    """The inference model; bf16 goes through save_pretrained + from_pretrained(dtype=...), as a user loads it (the
    sinc filters and heads stay float32)."""
    import tempfile

    from modeling_mtqnet import MTQNetConfig, MTQNetForSpeechQualityAssessment
    from modeling_mtqnet.scoring.loading import DTYPES

    config = MTQNetConfig.from_preset(preset, **PRESET_OVERRIDES[preset])
    model = MTQNetForSpeechQualityAssessment(config).drop_auxiliary_heads().eval()
    if model.mtqnet.ssl_encoder is None:
        raise RuntimeError(f"preset {preset!r} was built without an SSL encoder")
    if dtype != "fp32":
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            model = MTQNetForSpeechQualityAssessment.from_pretrained(folder, dtype=DTYPES[dtype]).eval()
    return model


def make_inputs(batch_size: int, duration_s: float) -> tuple[Any, Any]:
    """(input_values, attention_mask): Gaussian noise (std 0.1), every clip the full length, mask all ones."""
    import torch

    samples = int(round(duration_s * SAMPLING_RATE))
    input_values = 0.1 * torch.randn(batch_size, samples, dtype=torch.float32)
    return input_values, torch.ones(batch_size, samples, dtype=torch.long)


def rss_mb(field_name: str) -> float | None:
    """VmRSS / VmHWM of this process in MB from /proc/self/status, or None where unavailable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs). False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def peak_rss_mb(hwm_was_reset: bool) -> float:
    if hwm_was_reset:
        peak = rss_mb("VmHWM")
        if peak is not None:
            return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_case(case: BenchmarkCase) -> CaseResult:
    """Build, warm up and time one configuration in this process."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(case.threads)
    torch.manual_seed(case.seed)
    # The model refuses one-pass clips whose SSL self-attention would pass 2 GiB (52 s for WavLM-base) and has them
    # windowed; the benchmark lifts that guard so that 60 s is measured in one pass, like the reference figures.
    from modeling_mtqnet.model import configuration_mtqnet

    configuration_mtqnet.ONE_PASS_ATTENTION_BUDGET_BYTES = 1 << 60
    model = build_model(case.preset, case.dtype)
    if case.paths == "reference":
        from modeling_mtqnet.model import modeling_mtqnet
        from modeling_mtqnet.model.wavlm_attention import use_blockwise_wavlm_attention

        use_blockwise_wavlm_attention(model.mtqnet.ssl_encoder, enabled=False)
        modeling_mtqnet.CNN_PASS_VALUES = 1 << 60
    input_values, attention_mask = make_inputs(case.batch_size, case.duration_s)
    ssl_timer = CallTimer([model.mtqnet.ssl_encoder])
    timers = component_timers(model)

    baseline_mb = rss_mb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hwm_was_reset = reset_peak_rss()
    totals, ssl_times, components = [], [], {name: [] for name in timers}
    with torch.inference_mode():
        model(input_values=input_values, attention_mask=attention_mask)  # warm-up
        while len(totals) < case.repeats:
            for timer in [ssl_timer, *timers.values()]:
                timer.reset()
            start = time.perf_counter()
            model(input_values=input_values, attention_mask=attention_mask)
            totals.append(time.perf_counter() - start)
            ssl_times.append(ssl_timer.total_s)
            for name, timer in timers.items():
                components[name].append(timer.total_s)
            if sum(totals) + totals[-1] > case.time_budget_s:
                break
    peak_mb = peak_rss_mb(hwm_was_reset)
    return CaseResult(
        case=case,
        total_s=statistics.median(totals),
        ssl_s=statistics.median(ssl_times),
        trunk_s=statistics.median([t - s for t, s in zip(totals, ssl_times)]),
        peak_mb=peak_mb - baseline_mb,
        baseline_mb=baseline_mb,
        timed_runs=len(totals),
        total_range_s=(min(totals), max(totals)),
        components_s={name: statistics.median(values) for name, values in components.items()},
    )


def worker_main(case_json: str) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    result = run_case(BenchmarkCase(**json.loads(case_json)))
    print(json.dumps(asdict(result)))


# ----------------------------------------------------------------------------------------------------------------------
# Driver: one subprocess per configuration, then the tables
# ----------------------------------------------------------------------------------------------------------------------


def run_in_subprocess(case: BenchmarkCase, keep_freed_memory: bool) -> CaseResult:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(case))]
    env = {**os.environ, **(MALLOC_KEEP_MEMORY_ENV if keep_freed_memory else {})}
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    if completed.returncode != 0:
        tail = (completed.stderr.strip().splitlines() or [f"exit status {completed.returncode}"])[-1]
        return CaseResult(case=case, error=f"exit {completed.returncode}: {tail}")
    payload = json.loads(completed.stdout.strip().splitlines()[-1])
    payload["case"] = case
    return CaseResult(**payload)


def progress_line(result: CaseResult) -> str:
    if result.error:
        return result.error
    low, high = result.total_range_s
    return f"{result.timed_runs} timed runs, total {result.total_s:.2f} s median (range {low:.2f}-{high:.2f})"


def format_number(value: float, digits: int) -> str:
    return "—" if value != value else f"{value:.{digits}f}"  # NaN -> dash


def results_table(results: list[CaseResult]) -> str:
    lines = [
        "| preset | dtype | paths | batch | audio s | RTF total | RTF SSL | RTF trunk | trunk/SSL | peak MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        c = r.case
        cells = [c.preset, c.dtype, c.paths, str(c.batch_size), f"{c.duration_s:g}"]
        if r.error:
            cells += ["failed"] + [""] * 4 + [r.error]
        else:
            cells += [format_number(r.rtf(r.total_s), 3), format_number(r.rtf(r.ssl_s), 3)]
            cells += [format_number(r.rtf(r.trunk_s), 3), f"{100 * r.overhead:.0f}%", format_number(r.peak_mb, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def components_table(results: list[CaseResult]) -> str:
    """Share of the trunk's time per module; 'other' is the rest (fusion, padding, packing, masks)."""
    names = list(TRUNK_COMPONENTS) + ["other"]
    lines = [
        "| preset | dtype | paths | batch | audio s | trunk s | " + " | ".join(names) + " |",
        "|---|---|---|---:|---:|---:|" + "---:|" * len(names),
    ]
    for r in results:
        if r.error:
            continue
        shares = dict(r.components_s)
        shares["other"] = r.trunk_s - sum(shares.values())
        cells = [r.case.preset, r.case.dtype, r.case.paths, str(r.case.batch_size), f"{r.case.duration_s:g}",
                 f"{r.trunk_s:.2f}"]
        cells += [f"{100 * shares[name] / r.trunk_s:.0f}%" if name in shares else "—" for name in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def overhead_summary(results: list[CaseResult]) -> str:
    lines = []
    for r in results:
        if r.error or r.case.duration_s != AIM_DURATION_S:
            continue
        verdict = "meets" if r.overhead <= OVERHEAD_AIM else "misses"
        lines.append(
            f"- trunk overhead at {AIM_DURATION_S:g} s, {r.case.preset} {r.case.dtype} {r.case.paths}, "
            f"batch {r.case.batch_size}: "
            f"{100 * r.overhead:.0f}% of SSL time ({verdict} the <= {100 * OVERHEAD_AIM:.0f}% aim)"
        )
    return "\n".join(lines)


def speedup_summary(results: list[CaseResult]) -> str:
    """bf16 against fp32 of the same configuration (same run): total time ratio and SSL-encoder time ratio."""
    by_key = {(r.case.preset, r.case.batch_size, r.case.duration_s, r.case.paths, r.case.dtype): r
              for r in results if not r.error}
    lines = []
    for (preset, batch, duration, paths, dtype), reduced in by_key.items():
        full = by_key.get((preset, batch, duration, paths, "fp32"))
        if dtype == "fp32" or full is None:
            continue
        lines.append(f"- {dtype} speed-up, {preset} {paths} batch {batch} x {duration:g} s: "
                     f"{full.total_s / reduced.total_s:.2f}x "
                     f"in all, {full.ssl_s / reduced.ssl_s:.2f}x in the SSL encoder, "
                     f"{full.trunk_s / reduced.trunk_s:.2f}x in the trunk")
    return "\n".join(lines)


def skipped(case: BenchmarkCase, skip: list[str], max_batch_audio_s: float) -> bool:
    key = f"{case.preset}:{case.batch_size}:{case.duration_s:g}"
    return key in skip or (max_batch_audio_s > 0 and case.audio_seconds > max_batch_audio_s)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "CPU real-time factor and peak memory of MTQ-Net inference (random weights, auxiliary heads dropped, "
            "eval mode, torch.inference_mode), with a WavLM-base-sized SSL encoder in every preset. Each "
            "configuration runs in a fresh process: 1 warm-up forward, then up to --repeats timed forwards "
            "(median reported). RTF = processing seconds per second of audio (batch x duration)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--presets", nargs="+", default=list(PRESET_OVERRIDES), choices=list(PRESET_OVERRIDES),
                        help="presets to measure ('small' keeps aligned fusion, 'mosa-net' uses time fusion)")
    parser.add_argument("--durations", nargs="+", type=float, default=[3.0, 10.0, 60.0],
                        help="clip durations in seconds (every clip of a batch has this length)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8], help="batch sizes")
    parser.add_argument("--repeats", type=int, default=5,
                        help="most timed forwards per configuration, after 1 warm-up; the median is reported")
    parser.add_argument("--time-budget", type=float, default=60.0,
                        help="stop repeating a configuration once its timed forwards would exceed this many "
                             "seconds (at least one timed forward always runs)")
    parser.add_argument("--max-batch-audio", type=float, default=120.0,
                        help="skip configurations whose batch x duration exceeds this many seconds of audio "
                             "(the default skips batch 8 x 60 s, which takes several minutes per forward); "
                             "0 = no limit")
    parser.add_argument("--skip", nargs="*", default=[], metavar="PRESET:BATCH:SECONDS",
                        help="configurations to skip, e.g. mosa-net:8:60")
    parser.add_argument("--malloc", choices=["keep", "default"], default="keep",
                        help="'keep': run workers with glibc MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ raised, so "
                             "freed tensors' memory is reused rather than unmapped and faulted in again (steadier "
                             "timings); 'default': the allocator as a user gets it")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPE_NAMES), choices=list(DTYPE_NAMES),
                        help="weights' precision; bf16 loads the model with from_pretrained(dtype=torch.bfloat16)")
    parser.add_argument("--paths", nargs="+", default=["bounded"], choices=list(PATH_NAMES),
                        help="'bounded': block-wise WavLM attention and the CNN in passes of whole clips (the "
                             "package's default); 'reference': transformers' WavLM attention and one CNN pass for "
                             "the whole batch (same scores, memory quadratic in the clip and linear in the batch)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed for weights and inputs")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        worker_main(args.worker)
        return
    cases = [
        BenchmarkCase(preset, batch, duration, args.repeats, args.time_budget, args.threads, args.seed, dtype, paths)
        for preset in args.presets
        for batch in args.batch_sizes
        for duration in args.durations
        for dtype in args.dtypes
        for paths in args.paths
    ]
    results = []
    for case in cases:
        if skipped(case, args.skip, args.max_batch_audio):
            print(f"skip {case.preset} {case.dtype} {case.paths} batch {case.batch_size} x {case.duration_s:g} s", file=sys.stderr)
            continue
        start = time.perf_counter()
        result = run_in_subprocess(case, keep_freed_memory=args.malloc == "keep")
        print(f"{case.preset} {case.dtype} {case.paths} batch {case.batch_size} x {case.duration_s:g} s: {progress_line(result)} "
              f"[{time.perf_counter() - start:.0f} s wall]", file=sys.stderr, flush=True)
        results.append(result)
    print(results_table(results))
    print()
    print(overhead_summary(results))
    print()
    print(speedup_summary(results))
    print()
    print("Share of trunk time per module:")
    print()
    print(components_table(results))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
