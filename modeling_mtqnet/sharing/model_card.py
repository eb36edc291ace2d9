"""Render the Hub model card (README.md) of a trained MTQ-Net folder with huggingface_hub's `ModelCard`.

The folder is what `mtqnet train` writes: config.json (read as JSON), eval_results.json, results.md and scatter_<target>.png. The YAML block carries the model-index (LCC, SRCC and MSE
per target on the test split, or the validation split when there is no test set), the pipeline tag, library,
license, tags and the SSL encoder as base_model; the body is `model_card_template.md`. A model the package ships
(`mtqnet build-pretrained`) adds a section on its build, rendered from its build_info.json:
`model_card_shipped_teacher.md` or `model_card_shipped_student.md` (both include `model_card_shipped_encoder.md`).
The builds give data only: the words of a shipped model's card are in these templates.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..training import reporting
from ..vocabulary import (
    CONTINUED_FROM_LINE, METHOD_DESCRIPTIONS, PRIMARY_TARGETS, PSEUDO_LABEL_METHODS, PSEUDO_LABEL_TARGETS, display_name,
)

TEMPLATE_PATH = Path(__file__).with_name("model_card_template.md")
#: The section a shipped model's card adds on its build, by kind of build: (template beside this file, the targets of
#: its results by factor).
SHIPPED_SECTIONS = {"teacher": ("model_card_shipped_teacher.md", PSEUDO_LABEL_TARGETS),
                    "student": ("model_card_shipped_student.md", PRIMARY_TARGETS)}
TASK_TYPE = "audio-classification"
TASK_NAME = "Non-intrusive speech quality assessment"
TAGS = ["speech-quality-assessment", "custom_code", "mtqnet"]
# (key in eval_results.json, Hub metric type, display name)
METRICS = (("lcc", "pearsonr", "LCC"), ("srcc", "spearmanr", "SRCC"), ("mse", "mse", "MSE"))
SPLIT_PREFIXES = (("test", "test_"), ("validation", "eval_"))
RESULTS_TITLE = re.compile(r"^#\s*MTQ-Net results\s*\((?P<method>[^,)]+)")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
CITATION = """@inproceedings{zezario2024mtqnet,
  title     = {Multi-task Pseudo-Label Learning for Non-Intrusive Speech Quality Assessment Model},
  author    = {Zezario, Ryandhimas E. and Bai, Bo-Ren Brian and Fuh, Chiou-Shann and Wang, Hsin-Min and Tsao, Yu},
  booktitle = {ICASSP 2024 - 2024 IEEE International Conference on Acoustics, Speech and Signal Processing},
  year      = {2024}
}"""


@dataclass
class CardOptions:
    """What the folder does not record: the repo, the license and what the labels were."""

    repo_id: str
    license: str = "apache-2.0"
    method: str | None = None  # default: read from results.md's title line
    labels_description: str | None = None
    stand_in_labels: bool = False
    pseudo_label_targets: Sequence[str] | None = None  # default: the config's auxiliary targets
    dataset_name: str | None = None
    dataset_id: str | None = None  # a Hub dataset id: added to `datasets` and used as the model-index type
    shipped_section: str | None = None  # a shipped model's card: "teacher" or "student" (SHIPPED_SECTIONS)
    build_info: Mapping[str, Any] | None = None  # ... and its build's record (build_info.json), the section's data


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def select_split(results: Mapping[str, Any], targets: Sequence[str]) -> tuple[str, dict[str, float]] | None:
    """(split, {"<target>_<metric>": value}) from eval_results.json: the test_* keys when any is a number, else
    the eval_* (validation) keys; None when neither has a per-target metric."""
    for split, prefix in SPLIT_PREFIXES:
        metrics = {key[len(prefix):]: value for key, value in results.items() if key.startswith(prefix)}
        wanted = [f"{target}_{key}" for target in targets for key, _, _ in METRICS]
        if any(is_number(metrics.get(name)) for name in wanted):
            return split, metrics
    return None


def eval_results_for(targets: Sequence[str], metrics: Mapping[str, Any], split: str, dataset_name: str,
                     dataset_type: str) -> list[EvalResult]:
    """One `EvalResult` per target x metric with a finite value (missing or NaN metrics are left out)."""
    display = display_name
    results = []
    for target in targets:
        for key, metric_type, metric_label in METRICS:
            value = metrics.get(f"{target}_{key}")
            if not is_number(value):
                continue
            results.append(EvalResult(
                task_type=TASK_TYPE, task_name=TASK_NAME, dataset_type=dataset_type, dataset_name=dataset_name,
                dataset_split=split, metric_type=metric_type, metric_value=round(float(value), 4),
                metric_name=f"{display(target)} {metric_label}", metric_config=target,
            ))
    return results


def _results_head(model_dir: Path, lines: int = 5) -> list[str]:
    """The first lines of a trained folder's results.md (its title and what follows it); none without the file."""
    path = model_dir / "results.md"
    return path.read_text(encoding="utf-8").lstrip().splitlines()[:lines] if path.is_file() else []


def method_from_results(model_dir: Path) -> str | None:
    """The method on results.md's title line (`# MTQ-Net results (mpl, huber delta=1.0, alpha=1.0)`)."""
    first_line = _results_head(model_dir, 1)
    match = RESULTS_TITLE.match(first_line[0]) if first_line else None
    return match.group("method").strip() if match else None


def continued_from_results(model_dir: Path) -> str | None:
    """The saved model a run continued (`--model_name_or_path`), from results.md's `Continued from:` line."""
    for line in _results_head(model_dir):  # it follows the title
        if line.startswith(CONTINUED_FROM_LINE):
            return line.removeprefix(CONTINUED_FROM_LINE).strip() or None
    return None


def method_description(method: str, continued_from: str | None = None) -> str:
    """What a method did, in words; a continued model's starting point named (it did not start from scratch)."""
    described = METHOD_DESCRIPTIONS.get(method, "see the training set-up")
    if continued_from is None:
        return described
    if method == "scratch":
        described = "trained on the primary labels only"
    return f"{described}, continuing the saved MTQ-Net `{continued_from}`"


#: How a card names an SSL encoder's model type where the type alone would not say it (others: the model type).
SSL_DISPLAY_NAMES = {"distillmos_encoder": "pretrained Distill-MOS"}


def ssl_name(config: Mapping[str, Any]) -> str | None:
    ssl_config = config.get("ssl_config") or {}
    return ssl_config.get("_name_or_path") or None


def base_model_of(config: Mapping[str, Any]) -> str | None:
    """The SSL encoder's Hub id when it was loaded by name (a local folder is no Hub id)."""
    name = ssl_name(config)
    if not name or name.startswith((".", "/", "~")) or Path(name).exists() or not HUB_ID.match(name):
        return None
    return name


def ssl_description(config: Mapping[str, Any]) -> str | None:
    ssl_config = config.get("ssl_config")
    if not ssl_config:
        return None
    name = ssl_name(config)
    kind = SSL_DISPLAY_NAMES.get(ssl_config.get("model_type"), ssl_config.get("model_type", "SSL"))
    state = "frozen" if config.get("freeze_ssl") else "fine-tuned"
    return f"a {state} {kind} encoder" + (f" ({name})" if name else "")


def target_list(targets: Sequence[str]) -> str:
    display = display_name
    return ", ".join(f"{target} ({display(target)})" if display(target) != target else target for target in targets)


def pseudo_label_targets(config: Mapping[str, Any], options: CardOptions, method: str) -> str:
    if method and method not in PSEUDO_LABEL_METHODS and not options.pseudo_label_targets:
        return "none"  # scratch / kt train on primary labels only
    names = list(options.pseudo_label_targets or config.get("auxiliary_target_names")
                 or config.get("trained_auxiliary_target_names") or [])
    if names:
        return target_list(names)
    if method in PSEUDO_LABEL_METHODS:
        return "not recorded in the saved model (its pseudo-label heads were dropped for inference)"
    return "none"


def training_setup(config: Mapping[str, Any], options: CardOptions, method: str,
                   continued_from: str | None = None) -> list[str]:
    """The bullet lines of the card's training set-up section."""
    loss = str(config.get("loss_type", "huber"))
    lines = [
        f"Method: `{method}` ({method_description(method, continued_from)})",
        f"Loss: {loss}" + (f", delta = {config.get('huber_delta')}" if loss == "huber" else "")
        + "; per target, utterance loss + alpha x frame loss over valid frames",
        f"alpha (frame-level loss weight): {config.get('frame_loss_weight')}",
        f"Pseudo-label loss weight (L_superv + w x L_semi): {config.get('pseudo_label_loss_weight')}"
        + ("" if method in PSEUDO_LABEL_METHODS else " (unused: no pseudo labels)"),
        f"Targets: {target_list(config.get('target_names', []))}",
        f"Pseudo-label targets: {pseudo_label_targets(config, options, method)}",
        f"SSL encoder: {ssl_description(config) or 'none'}; fusion mode `{config.get('fusion_mode')}`",
    ]
    return lines


def results_section(model_dir: Path, targets: Sequence[str], selected: tuple[str, dict[str, float]] | None,
                    method: str, dataset_name: str) -> str:
    """results.md (without its title line) or a table built from eval_results.json, plus the scatter plots."""
    path = model_dir / "results.md"
    if path.is_file():
        lines = path.read_text(encoding="utf-8").strip().splitlines()
        body = "\n".join(lines[1:] if lines and RESULTS_TITLE.match(lines[0]) else lines).strip()
    elif selected is not None:
        split, metrics = selected
        body = "Cells: LCC / SRCC / MSE.\n\n" + reporting.results_table({f"{method} ({split})": metrics}, targets)
    else:
        return "No evaluation results were found in the model folder (eval_results.json, results.md)."
    if selected is not None:
        body += (f"\n\nThe model-index above reports the {selected[0]} split ({dataset_name}): LCC (Pearson), "
                 "SRCC (Spearman) and MSE per target.")
    plots = [f"![{display_name(t)}](scatter_{t}.png)" for t in targets
             if (model_dir / f"scatter_{t}.png").is_file()]
    return body + ("\n\n" + " ".join(plots) if plots else "")


def labels_section(options: CardOptions) -> str:
    described = (options.labels_description or "The training labels were not described when this card was "
                 "written.").strip()
    described += "" if described.endswith((".", "!", "?")) else "."
    if not options.stand_in_labels:
        return f"**Training labels:** {described}"
    return ("**The training labels are stand-ins, not 3QUEST scores.** " + described + " This model therefore "
            "estimates those stand-in labels, not the intrusive 3QUEST S-MOS / N-MOS / G-MOS the paper trains on, "
            "and its numbers are not comparable with the paper's results.")


def default_dataset_name(split: str) -> str:
    return "held-out test set" if split == "test" else "validation set (held out from the training data)"


def build_card_data(config: Mapping[str, Any], options: CardOptions,
                    eval_results: list[EvalResult]) -> ModelCardData:
    return ModelCardData(
        license=options.license,
        library_name="transformers",
        pipeline_tag=TASK_TYPE,
        tags=list(TAGS),
        base_model=base_model_of(config),
        datasets=[options.dataset_id] if options.dataset_id else None,
        metrics=[metric_type for _, metric_type, _ in METRICS],
        model_name=options.repo_id.split("/")[-1],
        eval_results=eval_results or None,
    )


def render_shipped_section(options: CardOptions) -> str:
    """The section a shipped model's card adds (data, results by factor, limits, rebuild), from its build_info.json;
    empty for any other model."""
    if options.shipped_section is None:
        return ""
    import jinja2  # as ModelCard.from_template, which renders the rest: huggingface_hub keeps it optional

    template, targets = SHIPPED_SECTIONS[options.shipped_section]
    info = options.build_info
    if info is None:
        raise ValueError(f"a shipped {options.shipped_section}'s card needs its build_info")
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_PATH.parent), keep_trailing_newline=True,
                                     undefined=jinja2.StrictUndefined)
    return environment.get_template(template).render(
        repo_id=options.repo_id, rebuild_name=options.repo_id.split("/")[-1], info=info,
        pool=info.get("pool") or {}, labels=info["labels"],
        factor_table=reporting.factor_table(info["evaluation"], targets=targets),
        timings=", ".join(f"{stage} {seconds / 60:.1f} min" for stage, seconds in info["timings_s"].items()),
        total_minutes=f"{sum(info['timings_s'].values()) / 60:.0f}", recipe_json=json.dumps(info["recipe"]))


def render_card(model_dir: str | Path, options: CardOptions) -> ModelCard:
    """The model card of a trained MTQ-Net folder; `str(card)` is the README.md to upload."""
    model_dir = Path(model_dir)
    config = read_json(model_dir / "config.json")
    targets = list(config.get("target_names", []))
    method = options.method or method_from_results(model_dir) or "unknown"
    continued_from = continued_from_results(model_dir)
    results_path = model_dir / "eval_results.json"
    selected = select_split(read_json(results_path), targets) if results_path.is_file() else None
    split = selected[0] if selected else "test"
    dataset_name = options.dataset_name or options.dataset_id or default_dataset_name(split)
    eval_results = eval_results_for(targets, selected[1], split, dataset_name, options.dataset_id or "custom") \
        if selected else []
    card_data = build_card_data(config, options, eval_results)
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_title=f"MTQ-Net speech quality assessment: {options.repo_id.split('/')[-1]}",
        summary=("Non-intrusive speech quality assessment: MTQ-Net predicts "
                 f"{target_list(targets)} from a single recording, with no clean reference, utterance-level scores "
                 "and frame-level curves."),
        outputs=target_list(targets),
        target_names=targets,
        num_targets=len(targets),
        method_description=f"`{method}`: {method_description(method, continued_from)}",
        ssl_description=ssl_description(config),
        results=results_section(model_dir, targets, selected, method, dataset_name),
        setup=training_setup(config, options, method, continued_from),
        repo_id=options.repo_id,
        labels_section=labels_section(options),
        citation=CITATION,
        shipped_section=render_shipped_section(options),
    )
