"""The web app under load, as its users meet it: many people scoring a short clip at once, long uploads (30 minutes,
two hours), three long uploads at once, and an upload over the limit.

The app runs in its own process (`python -m modeling_mtqnet app`), driven over HTTP by gradio_client, one Client
(one session) per user. Its memory is read from /proc/<pid>/status: VmRSS, and VmHWM (the peak), reset before each
phase through /proc/<pid>/clear_refs, so each phase's peak is its own. Latency is what a user waits: from submitting
(the upload included) to the answer. Each long file is also scored by `mtqnet score FILE --num_workers 0` in a fresh
process, for the time per minute of audio beside the app's (the app draws its pictures too; `mtqnet score` does not).

The long files are 16-bit stereo WAV at 16 kHz (a 30-minute one is 115 MB, as in issue 30), a speech-like tone with
noise whose level changes every minute, written 10 s at a time (never held whole).

Run from the repository root (about 10 minutes with the defaults and small-p835, most of it the two-hour file):
    .venv/bin/python benchmarks/app_load.py [--model mtqnet/small-p835] [--users 20] [--long_minutes 30 120]
        [--concurrent_long 3] [--threads 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

RATE = 16000
SHORT_S = 5.0

# `mtqnet score` in a fresh process, timed from after its imports (the app's figures do not include start-up either),
# with the threads the command would set (MTQNET_THREADS).
SCORE_CHILD = r"""
import json, resource, sys, time
from modeling_mtqnet.threads import set_threads_from_free_cores
from modeling_mtqnet.tools.score import main
set_threads_from_free_cores()
start = time.perf_counter()
main([sys.argv[1], "--model", sys.argv[2], "--output", sys.argv[3], "--num_workers", "0", "--no_progress"])
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_audio(path: Path, minutes: float, rate: int = RATE, channels: int = 2, subtype: str = "PCM_16") -> Path:
    """A speech-like harmonic tone with noise whose level changes every minute, written 10 s at a time."""
    import soundfile

    rng = np.random.default_rng(0)
    block, total = rate * 10, int(round(minutes * 60 * rate))
    with soundfile.SoundFile(path, "w", rate, channels, subtype=subtype) as handle:
        for index, start in enumerate(range(0, total, block)):
            t = np.arange(start, min(start + block, total)) / rate
            tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6)) * (np.sin(2 * np.pi * 0.7 * t) > 0)
            noise = 0.08 if (index // 6) % 4 == 3 else 0.02
            signal = 0.1 * tone + noise * rng.standard_normal(t.size)
            handle.write(np.stack([signal * (1 - 0.2 * c) for c in range(channels)], axis=1))
    return path


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak since the last reset) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "peak_mb": int(fields["VmHWM"].split()[0]) / 1024}


def reset_peak(pid: int) -> None:
    """VmHWM := VmRSS (Linux: writing 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app(model: str, threads: int, max_minutes: float, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MTQNET_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("OMP_NUM_THREADS", None)
    process = subprocess.Popen([sys.executable, "-m", "modeling_mtqnet", "app", "--model", model, "--port", str(port),
                                "--max_upload_minutes", f"{max_minutes:g}", "--max_queue", "64"],
                               env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the app did not start: {log.read_text()[-3000:]}") from None
            time.sleep(0.5)


def timed_request(client, path: Path) -> dict:
    from gradio_client import handle_file

    start = time.perf_counter()
    try:
        text, _, windows = client.predict(handle_file(str(path)), api_name="/score")
        return {"seconds": time.perf_counter() - start, "ok": "S-MOS" in text, "windows": len(windows["data"]),
                "text": text}
    except Exception as error:  # noqa: BLE001 - reported
        return {"seconds": time.perf_counter() - start, "ok": False, "error": " ".join(str(error).split())[:300]}


def percentiles(seconds: list[float]) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(seconds, q)) for q in (50, 90, 99)} | {"max": max(seconds)}


def requests_at_once(url: str, pid: int, path: Path, count: int) -> tuple[list[dict], dict, dict]:
    """`count` clients send `path` at once: their answers and the app's memory before and after (peak reset)."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(count)]
    reset_peak(pid)
    before = memory_mb(pid)
    with ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(lambda client: timed_request(client, path), clients))
    return answers, before, memory_mb(pid)


def burst(url: str, pid: int, users: int, path: Path) -> dict:
    """`users` people press Score on the same short clip at once."""
    answers, before, after = requests_at_once(url, pid, path, users)
    seconds = [answer["seconds"] for answer in answers]
    return {"users": users, "answered": sum(answer["ok"] for answer in answers), **percentiles(seconds),
            "rss_before_mb": before["rss_mb"], "peak_mb": after["peak_mb"], "rss_after_mb": after["rss_mb"]}


def long_uploads(url: str, pid: int, path: Path, count: int = 1) -> dict:
    """`count` people upload the same long file at once."""
    answers, before, after = requests_at_once(url, pid, path, count)
    return {"uploads": count, "answered": sum(answer["ok"] for answer in answers),
            "windows": answers[0].get("windows"), "seconds": max(answer["seconds"] for answer in answers),
            "rss_before_mb": before["rss_mb"], "peak_mb": after["peak_mb"], "rss_after_mb": after["rss_mb"],
            "errors": [answer["error"] for answer in answers if "error" in answer]}


def score_command(path: Path, model: str, threads: int, work: Path) -> dict:
    env = {**os.environ, "MTQNET_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)
    output = work / f"scores_{path.stem}.csv"
    output.unlink(missing_ok=True)
    completed = subprocess.run([sys.executable, "-c", SCORE_CHILD, str(path), model, str(output)], env=env,
                               capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-2000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mtqnet/small-p835", help="a saved folder or a shipped model's short name")
    parser.add_argument("--users", type=int, default=20, help="people scoring a 5 s clip at once")
    parser.add_argument("--long_minutes", nargs="*", type=float, default=[30, 120], help="long uploads, one at a time")
    parser.add_argument("--concurrent_long", type=int, default=3,
                        help="this many uploads of the first long file at once (0: none)")
    parser.add_argument("--threads", type=int, default=2, help="the app's intra-op threads (MTQNET_THREADS)")
    parser.add_argument("--no_score_command", action="store_true", help="skip `mtqnet score` on the long files")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    from modeling_mtqnet.pretrained import resolve_model

    model = resolve_model(args.model)
    limit_minutes = max([120.0, *args.long_minutes])  # the default limit, raised when a longer file is asked for
    figures: dict = {"model": args.model, "threads": args.threads, "limit_minutes": limit_minutes}
    with tempfile.TemporaryDirectory(prefix="mtqnet_app_load_") as tmp:
        work = Path(tmp)
        process, url = start_app(model, args.threads, limit_minutes, work / "app.log")
        try:
            figures["idle_rss_mb"] = memory_mb(process.pid)["rss_mb"]
            short = write_audio(work / "short.wav", SHORT_S / 60)
            from gradio_client import Client

            timed_request(Client(url, verbose=False), short)  # warm: plotting and the first model call loaded
            figures["warm_rss_mb"] = memory_mb(process.pid)["rss_mb"]
            print(f"app: idle {figures['idle_rss_mb']:.0f} MB, warm {figures['warm_rss_mb']:.0f} MB", flush=True)

            figures["burst"] = burst(url, process.pid, args.users, short)
            b = figures["burst"]
            print(f"\n{args.users} users x {SHORT_S:g} s at once: {b['answered']} answered; latency p50 "
                  f"{b['p50']:.1f} s, p90 {b['p90']:.1f} s, p99 {b['p99']:.1f} s, max {b['max']:.1f} s; RSS "
                  f"{b['rss_before_mb']:.0f} -> peak {b['peak_mb']:.0f} MB", flush=True)

            figures["long"] = []
            print("\n| upload | file size | windows | app: time | app: s per audio minute | app: peak RSS | "
                  "`mtqnet score`: time | s per audio minute | peak RSS |")
            print("|---|---|---|---|---|---|---|---|---|")
            for minutes in args.long_minutes:
                path = write_audio(work / f"long_{minutes:g}min.wav", minutes)
                row = {"minutes": minutes, "file_mb": path.stat().st_size / 1e6,
                       **long_uploads(url, process.pid, path)}
                command = None if args.no_score_command else score_command(path, model, args.threads, work)
                row["score_command"] = command
                figures["long"].append(row)
                cells = [f"{minutes:g} min", f"{row['file_mb']:.0f} MB", str(row["windows"]),
                         f"{row['seconds']:.1f} s", f"{row['seconds'] / minutes:.2f}", f"{row['peak_mb']:.0f} MB"]
                cells += ["-"] * 3 if command is None else [f"{command['seconds']:.1f} s",
                                                              f"{command['seconds'] / minutes:.2f}",
                                                              f"{command['peak_mb']:.0f} MB"]
                print("| " + " | ".join(cells) + " |" + (f" errors: {row['errors']}" if row["errors"] else ""),
                      flush=True)
                if minutes != args.long_minutes[0]:
                    path.unlink()

            if args.concurrent_long and args.long_minutes:
                minutes = args.long_minutes[0]
                path = work / f"long_{minutes:g}min.wav"
                row = long_uploads(url, process.pid, path, args.concurrent_long)
                figures["concurrent_long"] = {"minutes": minutes, **row}
                print(f"\n{args.concurrent_long} uploads of {minutes:g} min at once: {row['answered']} answered, the "
                      f"last after {row['seconds']:.1f} s; RSS {row['rss_before_mb']:.0f} -> peak "
                      f"{row['peak_mb']:.0f} MB", flush=True)

            over = write_audio(work / "over_limit.wav", limit_minutes + 5, rate=8000, channels=1, subtype="PCM_U8")
            answer = timed_request(Client(url, verbose=False), over)
            figures["over_limit"] = {"minutes": limit_minutes + 5, "file_mb": over.stat().st_size / 1e6,
                                     "seconds": answer["seconds"], "message": answer.get("error")}
            print(f"\nan upload of {limit_minutes + 5:g} min ({figures['over_limit']['file_mb']:.0f} MB), over the "
                  f"limit: answered in {answer['seconds']:.1f} s with: {answer.get('error')}", flush=True)
            figures["final_rss_mb"] = memory_mb(process.pid)["rss_mb"]
        finally:
            process.terminate()
            process.wait(timeout=60)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
