"""The names every wing of the package shares: the pipeline task, targets, training methods, columns, file suffixes.

One definition each. The target names themselves belong to the model (`model/configuration_mtqnet.py`, which travels
with a saved folder and so imports nothing from here); they are re-exported so that the recipe, labels and tools
import them from one place.
"""

from __future__ import annotations

from .model.configuration_mtqnet import AUXILIARY_TARGETS, PRIMARY_TARGETS

#: The `transformers.pipeline` task the package registers (`pipeline("speech-quality-assessment", model=...)`).
PIPELINE_TASK = "speech-quality-assessment"

# -- targets ------------------------------------------------------------------------------------------------------

#: The pseudo-label targets of the paper's teacher (MOSA-Net): intrusive PESQ, STOI and SDI.
PSEUDO_LABEL_TARGETS = AUXILIARY_TARGETS
TARGET_DISPLAY_NAMES = {"s_mos": "S-MOS", "n_mos": "N-MOS", "g_mos": "G-MOS", "pesq": "PESQ", "stoi": "STOI",
                        "sdi": "SDI"}


def display_name(target: str) -> str:
    """How a target is written in tables and plots (`s_mos` -> `S-MOS`); unknown names as they are."""
    return TARGET_DISPLAY_NAMES.get(target, target)


# -- training methods (the paper's four set-ups, Table 1) -----------------------------------------------------------

METHODS = ("scratch", "kt", "mpl", "mpl_kt")
#: Methods whose student has pseudo-label heads (and trains on pseudo-labelled clips).
PSEUDO_LABEL_METHODS = ("mpl", "mpl_kt")
#: Methods whose student's trunk starts from the teacher's (knowledge transfer).
TEACHER_TRUNK_METHODS = ("kt", "mpl_kt")
METHOD_DISPLAY_NAMES = {"scratch": "MTQ-Net, scratch", "kt": "MTQ-Net, KT", "mpl": "MTQ-Net, MPL",
                        "mpl_kt": "MTQ-Net, MPL + KT"}
METHOD_DESCRIPTIONS = {
    "scratch": "trained from scratch on the primary labels only",
    "kt": "knowledge transfer: trunk initialised from a MOSA-Net teacher, then trained on the primary labels",
    "mpl": "multi-task pseudo-label learning (MPL): primary labels plus pseudo-label heads trained on the "
           "teacher's pseudo labels",
    "mpl_kt": "MPL with knowledge transfer: trunk initialised from the teacher, primary labels plus pseudo-label "
              "heads",
}

#: The line of a trained folder's results.md that names the saved model a run continued (`--model_name_or_path`);
#: a model card reads it to describe the method truly.
CONTINUED_FROM_LINE = "Continued from: "

# -- columns -------------------------------------------------------------------------------------------------------

#: The column in which every batch job (scoring, annotating, intrusive labels) says why a row has no result.
ERROR_COLUMN = "error"
#: The default column of a manifest that holds the audio path.
AUDIO_COLUMN = "path"

# -- files ---------------------------------------------------------------------------------------------------------

#: Table files the tools read and write (manifests in, results out).
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
#: Audio file extensions searched for in folders (any format libsndfile reads), without the dot.
AUDIO_EXTENSIONS = (
    "wav", "wave", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif", "aifc", "au", "snd", "w64", "rf64", "caf",
    "sph", "nist", "voc", "sf", "htk", "sd2", "wve", "paf", "svx", "xi", "ircam", "pvf", "avr", "sds", "8svx", "mpc",
)


def audio_suffixes(extensions=AUDIO_EXTENSIONS) -> set[str]:
    """`{".wav", ".flac", ...}` from extensions given with or without dots, or comma-separated, any case."""
    return {"." + e.strip().lower().lstrip(".") for item in extensions for e in str(item).split(",") if e.strip()}


__all__ = [
    "PIPELINE_TASK",
    "PRIMARY_TARGETS", "AUXILIARY_TARGETS", "PSEUDO_LABEL_TARGETS", "TARGET_DISPLAY_NAMES", "display_name",
    "METHODS", "PSEUDO_LABEL_METHODS", "TEACHER_TRUNK_METHODS", "METHOD_DISPLAY_NAMES", "METHOD_DESCRIPTIONS",
    "CONTINUED_FROM_LINE", "ERROR_COLUMN", "AUDIO_COLUMN", "TABLE_SUFFIXES", "AUDIO_EXTENSIONS", "audio_suffixes",
]
