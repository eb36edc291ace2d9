"""`mtqnet`: one command for every job of the package, in the style of `hf` and `accelerate`.

    mtqnet demo --output_dir outputs/demo          # the MPL pipeline end to end on real speech, offline
    mtqnet score recordings/ --model DIR --output scores.csv
    mtqnet train --train_file train.csv --output_dir out/ --method mpl
    mtqnet app --model DIR                         # a web app: listen, look, compare
    mtqnet COMMAND --help                          # every option of a command

`python -m modeling_mtqnet ...` is the same command. `mtqnet-score` and `mtqnet-annotate` are kept as aliases of
`mtqnet score` and `mtqnet annotate`. A command that fails prints one line, `mtqnet COMMAND: error: ...`, and exits
with status 2 (1 for an unexpected failure); `mtqnet --debug COMMAND ...` shows the whole traceback instead.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Sequence

from .threads import forced_threads, free_core_threads, set_threads_from_free_cores

# name -> (module whose `main(argv, prog)` runs it, one line for `mtqnet --help`). A command's module is imported
# only when it runs, so one command never pays for another's dependencies (DNSMOS, onnx, huggingface_hub uploads).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("modeling_mtqnet.tools.demo",
             "the paper's MPL pipeline end to end on real speech (after `mtqnet speech-pool --fetch` once)"),
    "train": ("modeling_mtqnet.training.recipe", "train MTQ-Net (scratch, kt, mpl, mpl_kt) or a MOSA-Net teacher"),
    "annotate": ("modeling_mtqnet.labels.annotate",
                 "add a teacher's pseudo labels (a model, intrusive PESQ/STOI/SDI or DNSMOS) to a manifest"),
    "score": ("modeling_mtqnet.tools.score", "score audio files, folders, globs or manifests into a CSV / JSONL table"),
    "corpus": ("modeling_mtqnet.corpus.builder",
               "build noisy / enhanced / coded speech with aligned clean references and a manifest"),
    "speech-pool": ("modeling_mtqnet.corpus.speech_pool",
                    "make clean-speech and noise pools from real recordings in Debian packages"),
    "build-pretrained": ("modeling_mtqnet.tools.build_pretrained",
                         "rebuild a shipped model from nothing (data, corpus, labels, training, card)"),
    "build-encoder": ("modeling_mtqnet.tools.build_encoder",
                      "make the pretrained Distill-MOS encoder folder from its published weights (PyPI wheel)"),
    "tts": ("modeling_mtqnet.corpus.tts", "synthesise clean speech offline (piper or espeak-ng)"),
    "export-onnx": ("modeling_mtqnet.tools.export_onnx", "export a saved model to ONNX and check it against PyTorch"),
    "push": ("modeling_mtqnet.sharing.push", "upload a trained model folder to the Hugging Face Hub with its card"),
    "app": ("modeling_mtqnet.tools.app", "a web app (Gradio) to score, compare and batch-score recordings"),
}
DEBUG_FLAG = "--debug"


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [__doc__.strip().splitlines()[0], "", "usage: mtqnet [--debug] COMMAND [OPTIONS]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help     this message; `mtqnet COMMAND --help` lists a command's options",
              "  --version      the package version",
              "  --debug        show a failing command's traceback instead of a one-line error"]
    return "\n".join(lines)


def exit_status(result: Any) -> int:
    """A command's `main` returns an exit status (int), or something else (a path, metrics) meaning success."""
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def run_command(name: str, argv: Sequence[str], prog: str, debug: bool = False) -> int:
    """Run one command's `main(argv, prog=prog)` with one intra-op thread per core that other processes leave free
    (`threads.py`; `MTQNET_THREADS=N` or `all` overrides); errors become one line on stderr unless `debug`."""
    module = importlib.import_module(COMMANDS[name][0])
    if not any(flag in argv for flag in ("-h", "--help")):
        threads = set_threads_from_free_cores()
        cores = free_core_threads()
        if threads is not None and threads < cores and forced_threads() is None:  # not when MTQNET_THREADS=N
            print(f"{prog}: other processes keep {cores - threads} of {cores} cores busy: using {threads} "
                  f"thread{'s' if threads > 1 else ''} (MTQNET_THREADS=all to use every core)", file=sys.stderr)
    try:
        return exit_status(module.main(list(argv), prog=prog))
    except SystemExit:
        raise  # argparse's usage errors and the commands' own exits already say what is wrong
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - one clear line for the user; --debug for the traceback
        if debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        expected = isinstance(error, (ValueError, FileNotFoundError, ImportError, PermissionError, OSError))
        kind = "error" if expected else f"error ({type(error).__name__})"
        print(f"{prog}: {kind}: {message} (rerun with `mtqnet --debug {name} ...` for the traceback)",
              file=sys.stderr)
        return 2 if expected else 1


def main(argv: Sequence[str] | None = None) -> int:
    """The `mtqnet` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv[:1]
    if debug:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from . import __version__

        print(f"mtqnet {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"mtqnet: error: unknown command {name!r}; the commands are {', '.join(COMMANDS)} (mtqnet --help)",
              file=sys.stderr)
        return 2
    return run_command(name, argv[1:], prog=f"mtqnet {name}", debug=debug)


def score_alias() -> int:
    """`mtqnet-score`, kept for scripts written before `mtqnet score`."""
    return run_command("score", sys.argv[1:], prog="mtqnet-score")


def annotate_alias() -> int:
    """`mtqnet-annotate`, kept for scripts written before `mtqnet annotate`."""
    return run_command("annotate", sys.argv[1:], prog="mtqnet-annotate")


__all__ = ["COMMANDS", "main", "run_command", "score_alias", "annotate_alias"]
