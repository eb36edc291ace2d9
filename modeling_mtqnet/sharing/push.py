"""Upload a trained MTQ-Net folder (what `mtqnet train` writes) to the Hugging Face Hub, with a model card.

Uploaded: config.json, the weights (model.safetensors, or its shards and index), preprocessor_config.json, the
code files (so the repo loads with trust_remote_code=True), README.md (the rendered card: model-index with
LCC / SRCC / MSE per target, training set-up, usage, limitations, citation) and the results (eval_results.json,
results.md, predictions.csv, scatter_<target>.png). Never uploaded: training_args.bin, checkpoint-* folders and
anything else in the folder (including a README.md written by the Trainer, which the card replaces).

Examples (`mtqnet push` and `python push_to_hub.py` are the same command):
  mtqnet push out/mtqnet me/mtqnet-mpl --dry_run          # writes out/mtqnet/hub_upload, uploads nothing
  mtqnet push out/mtqnet me/mtqnet-mpl --private \\
      --labels_description "DNSMOS P.835 SIG/BAK/OVRL of the training clips" --stand_in_labels

Authentication: --token, else the HF_TOKEN environment variable or `hf auth login`. HF_ENDPOINT selects another
Hub (e.g. a private one); HF_HUB_OFFLINE=1 blocks uploads (use --dry_run).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..model.configuration_mtqnet import AUTO_MAP, CUSTOM_PIPELINES
from ..model.modeling_mtqnet import CODE_FILES
from .model_card import CardOptions, method_from_results, render_card
from .model_dir import ModelDirError, read_saved_config

FIXED_FILES = ("config.json", "preprocessor_config.json", *CODE_FILES)
RESULT_FILES = ("eval_results.json", "results.md", "predictions.csv")
RESULT_PATTERNS = ("scatter_*.png",)
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
CARD_NAME = "README.md"
DRY_RUN_DIR_NAME = "hub_upload"


# -- what to upload -------------------------------------------------------------------------------------------------


def load_config(model_dir: Path) -> dict[str, Any]:
    config = read_saved_config(model_dir)
    path = model_dir / "config.json"
    if not config.get("auto_map"):
        raise ModelDirError(f"{path} has no auto_map, so the repo would not load with trust_remote_code=True; "
                            "re-save the model with MTQNetForSpeechQualityAssessment.save_pretrained")
    return config


def weight_files(model_dir: Path) -> list[str]:
    """model.safetensors, or the index and the shards it names."""
    if (model_dir / WEIGHTS_NAME).is_file():
        return [WEIGHTS_NAME]
    index = model_dir / WEIGHTS_INDEX_NAME
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
        missing = [name for name in shards if not (model_dir / name).is_file()]
        if missing:
            raise ModelDirError(f"{model_dir} lacks weight shards named in {WEIGHTS_INDEX_NAME}: {', '.join(missing)}")
        return [WEIGHTS_INDEX_NAME, *shards]
    hint = " (only pytorch_model.bin: re-save with safe_serialization)" if (model_dir / "pytorch_model.bin").exists() \
        else ""
    raise ModelDirError(f"{model_dir} has no {WEIGHTS_NAME}{hint}")


def validate_model_dir(model_dir: Path) -> list[str]:
    """Check MODEL_DIR (config.json with model_type mtqnet and auto_map, weights, feature extractor, code files)
    and return the names of the files to upload, the card excepted."""
    load_config(model_dir)
    weights = weight_files(model_dir)
    if not (model_dir / "preprocessor_config.json").is_file():
        raise ModelDirError(f"{model_dir} has no preprocessor_config.json; write it with "
                            "MTQNetFeatureExtractor.from_model_config(model.config).save_pretrained(folder)")
    code_files = needed_code_files(model_dir)
    missing = [name for name in code_files if not (model_dir / name).is_file()]
    if missing:
        raise ModelDirError(f"{model_dir} lacks the code files {', '.join(missing)}; re-save the model with "
                            "MTQNetForSpeechQualityAssessment.save_pretrained, which copies them")
    results = [name for name in sorted(os.listdir(model_dir)) if (model_dir / name).is_file()
               and (name in RESULT_FILES or any(fnmatch.fnmatch(name, p) for p in RESULT_PATTERNS))]
    return ["config.json", "preprocessor_config.json", *code_files, *weights, *results]


def needed_code_files(model_dir: Path) -> list[str]:
    """The code files the folder's remote code needs: the modules that `auto_map` and the pipeline entry name, and
    every module that the folder's own copies of those import relatively, in turn. A folder saved before
    `wavlm_attention.py` existed needs the four others only, as its modeling file does not import it."""
    from transformers.dynamic_module_utils import get_relative_imports

    entries = [*AUTO_MAP.values(), *(pipeline["impl"] for pipeline in CUSTOM_PIPELINES.values())]
    needed = {f"{entry.split('.')[0]}.py" for entry in entries}
    read: set[str] = set()
    while unread := sorted(name for name in needed - read if (model_dir / name).is_file()):
        for name in unread:
            needed |= {f"{module}.py" for module in get_relative_imports(model_dir / name)}
        read.update(unread)
    return sorted(needed)


def is_uploadable_name(name: str) -> bool:
    """Whether a file name is one this tool writes into an upload folder."""
    return (name in (*FIXED_FILES, *RESULT_FILES, CARD_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
            or any(fnmatch.fnmatch(name, p) for p in (*RESULT_PATTERNS, "model-*-of-*.safetensors")))


def prepare_folder(folder: Path, model_dir: Path) -> None:
    """Create `folder`, emptying an earlier dry run there; refuse a folder holding anything else."""
    if folder.resolve() == model_dir.resolve() or model_dir.resolve().is_relative_to(folder.resolve()):
        raise ModelDirError(f"--dry_run_dir {folder} must not be MODEL_DIR or a folder above it")
    if folder.exists():
        foreign = [p.name for p in folder.iterdir() if not (p.is_file() and is_uploadable_name(p.name))]
        if foreign:
            raise ModelDirError(f"--dry_run_dir {folder} holds files this tool does not write ({', '.join(foreign)}); "
                                "choose an empty or new folder")
        for path in folder.iterdir():
            path.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def stage(model_dir: Path, names: list[str], card_text: str, folder: Path, link: bool) -> list[str]:
    """Fill `folder` with the files to upload (hard links where `link` and possible, else copies) and the card."""
    for name in names:
        source, target = model_dir / name, folder / name
        try:
            if not link:
                raise OSError
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    (folder / CARD_NAME).write_text(card_text, encoding="utf-8")
    return sorted([*names, CARD_NAME])


# -- uploading ------------------------------------------------------------------------------------------------------


def check_can_push(token: str | None) -> None:
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise RuntimeError("offline mode is on (HF_HUB_OFFLINE=1): unset it to upload, or use --dry_run")
    if token is None and get_token() is None:
        raise RuntimeError("no Hugging Face token: pass --token, set HF_TOKEN or run `hf auth login`")


def upload(folder: Path, args: argparse.Namespace) -> str:
    """Create the repo (and branch), upload `folder` in one go; return the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=args.token)
    repo_url = api.create_repo(args.repo_id, private=args.private, exist_ok=True, repo_type="model")
    if args.revision and args.revision != "main" and not args.revision.startswith("refs/"):
        api.create_branch(repo_url.repo_id, branch=args.revision, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_url.repo_id, folder_path=folder, revision=args.revision,
                               commit_message=args.commit_message, repo_type="model")
    return commit.commit_url


# -- command line ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None, prog: str | None = "mtqnet push") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="trained model folder (mtqnet train's --output_dir)")
    parser.add_argument("repo_id", help="Hub repo, e.g. your-name/mtqnet-mpl (created if missing)")
    hub = parser.add_argument_group("upload")
    hub.add_argument("--private", action="store_true", help="create the repo private (no effect if it exists)")
    hub.add_argument("--revision", default=None, help="branch to commit to (created if missing); default main")
    hub.add_argument("--commit_message", default=None,
                     help="commit title (default: 'Upload MTQ-Net (<method>) with push_to_hub.py')")
    hub.add_argument("--token", default=None, help="Hub token with write access (default: HF_TOKEN or the login)")
    hub.add_argument("--dry_run", action="store_true",
                     help="write the exact upload folder (card included) and upload nothing")
    hub.add_argument("--dry_run_dir", type=Path, default=None,
                     help=f"where --dry_run writes (default MODEL_DIR/{DRY_RUN_DIR_NAME}; an earlier dry run there "
                          "is replaced)")
    card = parser.add_argument_group("model card")
    card.add_argument("--license", default="apache-2.0", help="license id for the card (default apache-2.0)")
    card.add_argument("--method", default=None,
                      help="training method (scratch, kt, mpl, mpl_kt); default: read from results.md's title")
    card.add_argument("--labels_description", default=None,
                      help="what the training labels were, e.g. '3QUEST S-MOS/N-MOS/G-MOS of noisy Mandarin speech'")
    card.add_argument("--stand_in_labels", action="store_true",
                      help="the labels stand in for 3QUEST (e.g. DNSMOS P.835): the card says so plainly; needs "
                           "--labels_description")
    card.add_argument("--pseudo_label_targets", nargs="+", default=None,
                      help="pseudo-label columns used in training (mtqnet train drops their heads from the saved config)")
    card.add_argument("--dataset_name", default=None, help="name of the evaluation data in the model-index")
    card.add_argument("--dataset_id", default=None, help="Hub dataset id of the training/evaluation data, if any")
    args = parser.parse_args(argv)
    if args.stand_in_labels and not args.labels_description:
        parser.error("--stand_in_labels needs --labels_description saying what the labels were")
    return args


def card_options(args: argparse.Namespace) -> CardOptions:
    return CardOptions(repo_id=args.repo_id, license=args.license, method=args.method,
                       labels_description=args.labels_description, stand_in_labels=args.stand_in_labels,
                       pseudo_label_targets=args.pseudo_label_targets, dataset_name=args.dataset_name,
                       dataset_id=args.dataset_id)


def run(args: argparse.Namespace) -> None:
    model_dir: Path = args.model_dir
    names = validate_model_dir(model_dir)
    card = render_card(model_dir, card_options(args))
    if args.commit_message is None:
        method = args.method or method_from_results(model_dir) or "unknown method"
        args.commit_message = f"Upload MTQ-Net ({method}) with push_to_hub.py"
    if args.dry_run:
        folder = args.dry_run_dir or model_dir / DRY_RUN_DIR_NAME
        prepare_folder(folder, model_dir)
        files = stage(model_dir, names, str(card), folder, link=False)
        print(f"Dry run: wrote the upload folder {folder} ({len(files)} files); nothing was uploaded.")
        for name in files:
            print(f"  {name:40s} {(folder / name).stat().st_size:>12,d} bytes")
        return
    check_can_push(args.token)
    from huggingface_hub.errors import HfHubHTTPError

    with tempfile.TemporaryDirectory(prefix="mtqnet_hub_") as tmp:
        files = stage(model_dir, names, str(card), Path(tmp), link=True)
        try:
            commit_url = upload(Path(tmp), args)
        except (HfHubHTTPError, ValueError) as error:  # e.g. 401/403, or the Hub rejecting the card's metadata
            raise RuntimeError(f"upload to {args.repo_id} failed: {error}") from error
    print(f"Uploaded {len(files)} files to {args.repo_id}: {commit_url}")


def main(argv: list[str] | None = None, prog: str | None = "mtqnet push") -> int:
    """`mtqnet push` (and the top-level `push_to_hub.py`); returns the exit status."""
    args = parse_args(argv, prog)
    try:
        run(args)
    except (ModelDirError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
