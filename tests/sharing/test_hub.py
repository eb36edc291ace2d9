"""push_to_hub.py, the model card and the Trainer's push, against a small loopback Hub (nothing leaves 127.0.0.1).

`FakeHub` answers what huggingface_hub 2.4 calls for `create_repo`, `create_branch`, `upload_folder` (its xet
pipeline asks `preupload` for each file's mode: we answer "regular", so content comes inline, base64, in the
NDJSON commit and no xet/LFS transfer starts), the README's `validate-yaml`, and 404s for file downloads (a repo
reads as having no card yet). Anything else is answered 404 and recorded in `unhandled`.
The CLI runs in a subprocess with HF_ENDPOINT pointing at the server (huggingface_hub reads it at import); the
in-process tests patch `huggingface_hub.constants` (ENDPOINT, the download URL template, HF_HUB_OFFLINE) and
transformers' shared `HfApi` instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import torch
import yaml

from modeling_mtqnet.sharing import push as push_to_hub
from modeling_mtqnet.sharing.model_card import CardOptions, render_card
from modeling_mtqnet import MTQNetFeatureExtractor
from modeling_mtqnet.training.reporting import results_table
from tests.helpers import build_model, noisy_tone, run_without_package

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_loopback_test_token"
TARGETS = ["s_mos", "n_mos", "g_mos"]
CODE_FILES = ["configuration_mtqnet.py", "feature_extraction_mtqnet.py", "modeling_mtqnet.py", "pipeline_mtqnet.py",
              "wavlm_attention.py", "configuration_distillmos.py", "modeling_distillmos.py"]
EXPECTED_UPLOAD = {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", *CODE_FILES,
                   "eval_results.json", "results.md", "predictions.csv",
                   *(f"scatter_{t}.png" for t in TARGETS)}
# What train.py writes: validation metrics (eval_*) and test metrics (test_*); NaN is written as null.
EVAL_RESULTS = {
    "eval_loss": 0.41, "eval_s_mos_lcc": 0.61, "eval_s_mos_srcc": 0.58, "eval_s_mos_mse": 0.33,
    "eval_n_mos_lcc": 0.66, "eval_n_mos_srcc": 0.64, "eval_n_mos_mse": 0.29,
    "eval_g_mos_lcc": 0.7, "eval_g_mos_srcc": 0.69, "eval_g_mos_mse": 0.27, "eval_lcc": 0.6567,
    "test_loss": 0.38, "test_s_mos_lcc": 0.712345, "test_s_mos_srcc": 0.701, "test_s_mos_mse": 0.251,
    "test_n_mos_lcc": 0.802, "test_n_mos_srcc": 0.79, "test_n_mos_mse": 0.203,
    "test_g_mos_lcc": 0.853, "test_g_mos_srcc": 0.8412, "test_g_mos_mse": 0.1875, "test_lcc": 0.789,
}
TEST_METRICS = {f"{t}_{m}": EVAL_RESULTS[f"test_{t}_{m}"] for t in TARGETS for m in ("lcc", "srcc", "mse")}


# -- the loopback Hub -----------------------------------------------------------------------------------------------


@dataclass
class FakeHub:
    url: str = ""
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)  # repo_id -> {"private", "branches", "commits"}
    requests: list[tuple[str, str]] = field(default_factory=list)
    unhandled: list[str] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    validated: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return self.repos[repo_id]["branches"][branch]

    def requests_for(self, repo_id: str) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.requests if repo_id in unquote(path)]


REPO = r"(?P<repo>[^/]+/[^/]+)"
POST_ROUTES = (
    (re.compile(r"^/api/repos/create$"), "create_repo"),
    (re.compile(rf"^/api/models/{REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    (re.compile(rf"^/api/models/{REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
    (re.compile(rf"^/api/models/{REPO}/branch/(?P<rev>[^/]+)$"), "create_branch"),
    (re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
)
RESOLVE = re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
REPO_INFO = re.compile(rf"^/api/models/{REPO}(/revision/(?P<rev>[^/]+))?$")


def metadata_errors(content: str) -> list[str]:
    """The structural checks the Hub applies to a model card's YAML block (the parts our cards use)."""
    match = re.match(r"^---\r?\n(.*?)\r?\n---", content, re.DOTALL)
    if not match:
        return []
    try:
        data = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as error:
        return [f"YAML: {error}"]
    if not isinstance(data, dict):
        return ["metadata must be a mapping"]
    errors = [f"{key} must be a string" for key in ("license", "library_name", "pipeline_tag", "base_model")
              if key in data and not isinstance(data[key], str)]
    if "tags" in data and not (isinstance(data["tags"], list) and all(isinstance(t, str) for t in data["tags"])):
        errors.append("tags must be a list of strings")
    for entry in data.get("model-index", []) or []:
        for result in entry.get("results", []):
            if not result.get("task", {}).get("type") or not result.get("dataset", {}).get("type") \
                    or not result.get("dataset", {}).get("name"):
                errors.append("model-index result needs task.type, dataset.type and dataset.name")
            for metric in result.get("metrics", []):
                if not metric.get("type") or not isinstance(metric.get("value"), (int, float)):
                    errors.append(f"model-index metric needs a type and a numeric value: {metric}")
    return errors


class FakeHubHandler(BaseHTTPRequestHandler):
    hub: FakeHub
    timeout = 30  # a stuck client cannot hold a handler thread forever

    def log_message(self, *args: Any) -> None:
        pass

    # -- plumbing --

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.startswith("Bearer hf_revoked"):
            self._send(401, {"error": "Invalid credentials"})
            return False
        self.hub.tokens.add(auth[len("Bearer "):])
        return True

    def _repo(self, repo_id: str) -> dict[str, Any] | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        return repo

    # -- verbs --

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        self.hub.requests.append(("POST", path))
        for pattern, name in POST_ROUTES:
            match = pattern.match(path)
            if match:
                with self.hub.lock:
                    getattr(self, name)(body, **{k: unquote(v) for k, v in match.groupdict().items()})
                return
        self.hub.unhandled.append(f"POST {self.path}")
        self._send(404, {"error": "not emulated"})

    def do_HEAD(self) -> None:
        self._resolve()

    def do_GET(self) -> None:
        self._resolve()

    def do_PUT(self) -> None:
        self._body()
        self.hub.unhandled.append(f"PUT {self.path}")
        self._send(404, {"error": "not emulated"})

    def _resolve(self) -> None:
        path = urlsplit(self.path).path
        self.hub.requests.append((self.command, path))
        if path == "/api/agent-harnesses":  # huggingface_hub's best-effort agent registry: 404 caches nothing
            self._send(404, {"error": "not emulated"})
            return
        if (info := REPO_INFO.match(path)) and self.command == "GET":
            self.repo_info(info["repo"], unquote(info["rev"] or "main"))
            return
        match = RESOLVE.match(path)
        if not match:
            self.hub.unhandled.append(f"{self.command} {self.path}")
            self._send(404, {"error": "not emulated"})
            return
        repo = self._repo(match["repo"])
        if repo is None:
            return
        if match["path"] not in repo["branches"].get(unquote(match["rev"]), {}):
            self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            return
        self.hub.unhandled.append(f"{self.command} {self.path} (downloads are not emulated)")
        self._send(501, {"error": "downloads are not emulated"})

    # -- endpoints --

    def repo_info(self, repo_id: str, rev: str) -> None:
        if not self._authorised() or (record := self._repo(repo_id)) is None:
            return
        commits = [c for c in record["commits"] if c["revision"] == rev]
        self._send(200, {"id": repo_id, "private": record["private"], "sha": commits[-1]["oid"] if commits else "0" * 40,
                         "siblings": [{"rfilename": name} for name in sorted(record["branches"].get(rev, {}))]})

    def create_repo(self, body: bytes) -> None:
        if not self._authorised():
            return
        payload = json.loads(body)
        repo_id = f"{payload.get('organization') or 'tester'}/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        if repo_id in self.hub.repos:
            self._send(409, {"error": "You already created this model repo", "url": url})
            return
        self.hub.repos[repo_id] = {"private": payload.get("visibility") == "private" or bool(payload.get("private")),
                                   "branches": {"main": {}}, "commits": []}
        self._send(200, {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()})

    def create_branch(self, body: bytes, repo: str, rev: str) -> None:
        if not self._authorised() or (record := self._repo(repo)) is None:
            return
        if rev in record["branches"]:
            self._send(409, {"error": "Reference already exists"})
            return
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        record["branches"][rev] = dict(record["branches"][start])
        self._send(200, {})

    def preupload(self, body: bytes, repo: str, rev: str) -> None:
        if not self._authorised() or self._repo(repo) is None:
            return
        files = json.loads(body)["files"]
        self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                   for f in files], "commitOid": "0" * 40})

    def commit(self, body: bytes, repo: str, rev: str) -> None:
        if not self._authorised() or (record := self._repo(repo)) is None:
            return
        if rev not in record["branches"]:
            self._send(404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
            return
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        files = dict(record["branches"][rev])
        for line in lines:
            if line["key"] == "file":
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] == "deletedFile":
                files.pop(line["value"]["path"], None)
            elif line["key"] != "header":  # lfsFile / deletedFolder: content we never received
                self._send(422, {"error": f"{line['key']} is not emulated"})
                return
        record["branches"][rev] = files
        oid = hashlib.sha1(body).hexdigest()
        record["commits"].append({"oid": oid, "revision": rev, "summary": header["summary"],
                                  "paths": sorted(line["value"]["path"] for line in lines if line["key"] == "file")})
        self._send(200, {"success": True, "commitOid": oid, "commitUrl": f"{self.hub.url}/{repo}/commit/{oid}",
                         "pullRequestUrl": None, "hookOutput": ""})

    def validate_yaml(self, body: bytes) -> None:
        content = json.loads(body)["content"]
        self.hub.validated.append(content)
        errors = metadata_errors(content)
        self._send(400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})


@pytest.fixture(scope="module")
def hub():
    state = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (FakeHubHandler,), {"hub": state}))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def hub_env(hub: FakeHub, home: Path) -> dict[str, str]:
    """Environment for a process that talks to the loopback Hub only, with its own HF_HOME (no stored token)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING_FACE_")) and k != "TRANSFORMERS_OFFLINE"}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_TOKEN=TOKEN, HF_HOME=str(home),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", PYTHONPATH=str(REPO_ROOT))
    return env


def run_python(args: list[str], env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


# -- a trained-model folder, as train.py leaves it ------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    return build_model().drop_auxiliary_heads()  # train.py saves the inference model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    model.save_pretrained(folder)
    MTQNetFeatureExtractor.from_model_config(model.config).save_pretrained(folder)
    (folder / "eval_results.json").write_text(json.dumps(EVAL_RESULTS, indent=2))
    systems = {"mpl (validation)": {k: v for k, v in EVAL_RESULTS.items() if k.startswith("eval_")},
               "mpl (test)": {k: v for k, v in EVAL_RESULTS.items() if k.startswith("test_")}}
    (folder / "results.md").write_text("# MTQ-Net results (mpl, huber delta=1.0, alpha=1.0)\n\nCells: LCC / SRCC / "
                                       "MSE.\n\n" + results_table(systems, TARGETS) + "\n")
    (folder / "predictions.csv").write_text("audio_id,s_mos,s_mos_pred\nclip0,3.2,3.05\n")
    for target in TARGETS:
        (folder / f"scatter_{target}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + target.encode())
    # Never uploaded: the Trainer's leftovers.
    (folder / "training_args.bin").write_bytes(b"pickled TrainingArguments")
    (folder / "checkpoint-4").mkdir()
    (folder / "checkpoint-4" / "model.safetensors").write_bytes(b"old weights")
    (folder / "README.md").write_text("---\ntags:\n- generated_from_trainer\n---\n# stale Trainer card\n")
    return folder


PUSH_ARGS = ["--labels_description", "DNSMOS P.835 SIG / BAK / OVRL of the training clips", "--stand_in_labels",
             "--pseudo_label_targets", "pesq", "stoi", "sdi", "--dataset_name", "loopback test set"]


@pytest.fixture(scope="module")
def pushed(hub, model_dir, tmp_path_factory) -> dict[str, bytes]:
    """push_to_hub.py run once, as a user would, against the loopback Hub; returns the files the Hub holds."""
    env = hub_env(hub, tmp_path_factory.mktemp("hf_home"))
    completed = run_python(["push_to_hub.py", str(model_dir), "tester/mtqnet-tiny", "--private", "--license", "mit",
                            "--commit_message", "First upload", *PUSH_ARGS], env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "tester/mtqnet-tiny" in completed.stdout
    return hub.files("tester/mtqnet-tiny")


# -- tests ----------------------------------------------------------------------------------------------------------


def test_dry_run_writes_the_upload_folder_and_uploads_nothing(hub, model_dir, capsys, monkeypatch):
    from huggingface_hub import constants

    # Pointed at the loopback Hub and online, so that an upload by mistake would be seen there.
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert push_to_hub.main([str(model_dir), "tester/dry-run", "--dry_run", *PUSH_ARGS]) == 0
    folder = model_dir / "hub_upload"
    assert {p.name for p in folder.iterdir()} == EXPECTED_UPLOAD
    assert (folder / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    card = (folder / "README.md").read_text()
    assert "stale Trainer card" not in card and "tester/dry-run" in card
    assert "nothing was uploaded" in capsys.readouterr().out
    # A second dry run replaces the first; a folder with foreign files is refused rather than emptied.
    assert push_to_hub.main([str(model_dir), "tester/dry-run", "--dry_run", "--dry_run_dir", str(folder)]) == 0
    (folder / "notes.txt").write_text("mine")
    assert push_to_hub.main([str(model_dir), "tester/dry-run", "--dry_run", "--dry_run_dir", str(folder)]) == 2
    assert "notes.txt" in capsys.readouterr().err and (folder / "notes.txt").exists()
    (folder / "notes.txt").unlink()
    assert hub.requests_for("tester/dry-run") == [] and "tester/dry-run" not in hub.repos


def test_push_sends_exactly_the_upload_set(hub, model_dir, pushed):
    assert set(pushed) == EXPECTED_UPLOAD  # no training_args.bin, checkpoint-4/, hub_upload/ or Trainer card
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "eval_results.json", *CODE_FILES):
        assert pushed[name] == (model_dir / name).read_bytes(), name
    repo = hub.repos["tester/mtqnet-tiny"]
    assert repo["private"] is True
    assert [c["summary"] for c in repo["commits"]] == ["First upload"]
    assert TOKEN in hub.tokens
    assert any(content.startswith("---") and "model-index" in content for content in hub.validated)
    assert hub.unhandled == []


def test_push_to_a_branch(hub, model_dir, tmp_path):
    env = hub_env(hub, tmp_path / "hf_home")
    env.pop("HF_TOKEN")
    completed = run_python(["push_to_hub.py", str(model_dir), "tester/branched", "--revision", "dev",
                            "--token", "hf_cli_token"], env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "hf_cli_token" in hub.tokens
    repo = hub.repos["tester/branched"]
    assert repo["branches"]["main"] == {} and set(repo["branches"]["dev"]) == EXPECTED_UPLOAD
    assert repo["commits"][0]["summary"] == "Upload MTQ-Net (mpl) with push_to_hub.py"


def test_a_rejected_push_gives_a_clear_error(hub, model_dir, tmp_path):
    env = hub_env(hub, tmp_path / "hf_home")
    completed = run_python(["push_to_hub.py", str(model_dir), "tester/refused", "--token", "hf_revoked_token"], env)
    assert completed.returncode == 2
    assert "error: upload to tester/refused failed" in completed.stderr and "401" in completed.stderr
    assert "Traceback" not in completed.stderr and "tester/refused" not in hub.repos


def test_card_metadata_validates_and_round_trips(hub, pushed, monkeypatch, tmp_path):
    from huggingface_hub import ModelCard, constants

    content = pushed["README.md"].decode()
    card = ModelCard(content)
    data = card.data
    assert data.pipeline_tag == "audio-classification" and data.library_name == "transformers"
    assert data.license == "mit" and data.tags == ["speech-quality-assessment", "custom_code", "mtqnet"]
    assert data.get("base_model") is None  # the tiny model's WavLM has no Hub name
    assert data.model_name == "mtqnet-tiny"
    results = {(r.metric_config, r.metric_type): r for r in data.eval_results}
    assert len(data.eval_results) == len(results) == len(TARGETS) * 3
    for target in TARGETS:
        for key, metric_type in (("lcc", "pearsonr"), ("srcc", "spearmanr"), ("mse", "mse")):
            result = results[(target, metric_type)]
            assert result.metric_value == pytest.approx(TEST_METRICS[f"{target}_{key}"], abs=5e-5)
            assert (result.dataset_split, result.dataset_name) == ("test", "loopback test set")
            assert result.task_type == "audio-classification"
    assert ModelCard(str(card)).data.to_dict() == data.to_dict()  # YAML -> data -> YAML is stable
    (tmp_path / "README.md").write_text(content, encoding="utf-8")
    assert ModelCard.load(tmp_path / "README.md").data.to_dict() == data.to_dict()
    body = card.text
    assert "**The training labels are stand-ins, not 3QUEST scores.** DNSMOS P.835" in body
    assert "Pseudo-label targets: pesq (PESQ), stoi (STOI), sdi (SDI)" in body
    assert "0.712 / 0.701 / 0.251" in body  # results.md's table
    assert "delta = 1.0" in body and "Zezario" in body and "ICASSP 2024" in body
    assert 'pipeline("speech-quality-assessment", model="tester/mtqnet-tiny")' in body
    assert 'get_class_from_dynamic_module("pipeline_mtqnet.SpeechQualityAssessmentPipeline", "tester/mtqnet-tiny")' \
        in body
    # The card validates against the Hub's validate-yaml in this process too (constants patched), and a broken
    # model-index is rejected, so the check above could fail.
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    card.validate()
    broken = content.replace("    - type: pearsonr\n      value: 0.7123", "    - type: pearsonr\n      value: high", 1)
    assert broken != content
    with pytest.raises(ValueError, match="numeric value"):
        ModelCard(broken).validate()


def test_card_without_test_split_uses_validation_and_names_the_encoder(model_dir, tmp_path):
    config = json.loads((model_dir / "config.json").read_text())
    config["ssl_config"]["_name_or_path"] = "microsoft/wavlm-base-plus"
    config["freeze_ssl"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    validation = {k: v for k, v in EVAL_RESULTS.items() if k.startswith("eval_")}
    validation["eval_g_mos_mse"] = None  # NaN, as train.py writes it
    (tmp_path / "eval_results.json").write_text(json.dumps(validation))
    card = render_card(tmp_path, CardOptions(repo_id="tester/other", method="scratch",
                                             labels_description="3QUEST S-MOS, N-MOS and G-MOS"))
    assert card.data.base_model == "microsoft/wavlm-base-plus"
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}
    assert len(card.data.eval_results) == 8  # the null MSE is left out
    assert card.data.license == "apache-2.0"
    assert "| scratch (validation) | 0.610 / 0.580 / 0.330 |" in card.text
    assert "frozen wavlm encoder (microsoft/wavlm-base-plus)" in card.text
    assert "stand-in" not in card.text and "**Training labels:** 3QUEST S-MOS, N-MOS and G-MOS." in card.text
    assert "Pseudo-label targets: none" in card.text


def test_uploaded_repo_loads_without_the_package_and_scores_the_same(pushed, model, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name, content in pushed.items():
        (repo / name).write_bytes(content)
    clips = [noisy_tone(0.8, 5.0, seed=1), noisy_tone(1.3, 20.0, seed=2)]
    for index, clip in enumerate(clips):
        np.save(tmp_path / f"clip{index}.npy", clip)
    extractor = MTQNetFeatureExtractor.from_model_config(model.config)
    with torch.no_grad():
        expected = [model(**extractor(c, sampling_rate=16000, return_tensors="pt")).logits[0].tolist() for c in clips]
    output = run_without_package(textwrap.dedent(f"""
        import json, numpy as np, torch
        from transformers import AutoFeatureExtractor, AutoModel, pipeline
        from transformers.dynamic_module_utils import get_class_from_dynamic_module
        repo = {str(repo)!r}
        model = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
        extractor = AutoFeatureExtractor.from_pretrained(repo, trust_remote_code=True)
        assert "modeling_mtqnet" not in type(model).__module__.split(".")[0]
        clips = [np.load({str(tmp_path)!r} + f"/clip{{i}}.npy") for i in range(2)]
        with torch.no_grad():
            scores = [model(**extractor(c, sampling_rate=16000, return_tensors="pt")).logits[0].tolist()
                      for c in clips]
        pipeline_class = get_class_from_dynamic_module("pipeline_mtqnet.SpeechQualityAssessmentPipeline", repo)
        scorer = pipeline("audio-classification", model=repo, pipeline_class=pipeline_class, trust_remote_code=True)
        result = scorer(clips[0], sampling_rate=16000)
        print(json.dumps({{"scores": scores, "g_mos": result["g_mos"], "module": type(model).__module__}}))
    """), cwd=tmp_path)
    result = json.loads(output.strip().splitlines()[-1])
    assert result["module"].startswith("transformers_modules")
    np.testing.assert_allclose(result["scores"], expected, atol=1e-6, rtol=0)
    assert result["g_mos"] == pytest.approx(expected[0][2], abs=1e-5)


def test_bad_model_dir_gives_a_clear_error(model_dir, tmp_path, capsys, monkeypatch):
    def broken(name: str, edit) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for source in model_dir.iterdir():
            if source.is_file():
                (folder / source.name).write_bytes(source.read_bytes())
        edit(folder)
        return folder

    config = json.loads((model_dir / "config.json").read_text())
    cases = {
        "does not exist": tmp_path / "missing",
        "has no config.json": broken("no_config", lambda f: (f / "config.json").unlink()),
        "model_type is 'wavlm', expected 'mtqnet'": broken(
            "wrong_type", lambda f: (f / "config.json").write_text(json.dumps({**config, "model_type": "wavlm"}))),
        "has no auto_map": broken(
            "no_auto_map", lambda f: (f / "config.json").write_text(json.dumps({**config, "auto_map": None}))),
        "has no model.safetensors": broken("no_weights", lambda f: (f / "model.safetensors").unlink()),
        "has no preprocessor_config.json": broken("no_fe", lambda f: (f / "preprocessor_config.json").unlink()),
        "lacks the code files pipeline_mtqnet.py": broken("no_code", lambda f: (f / "pipeline_mtqnet.py").unlink()),
        # Today's modeling file imports it, so the folder's remote code could not load without it.
        "lacks the code files wavlm_attention.py": broken("no_attention",
                                                          lambda f: (f / "wavlm_attention.py").unlink()),
    }
    for message, folder in cases.items():
        with pytest.raises(push_to_hub.ModelDirError, match=re.escape(message)):
            push_to_hub.validate_model_dir(folder)
        assert push_to_hub.main([str(folder), "tester/bad", "--dry_run"]) == 2
        assert message in capsys.readouterr().err
    # Offline, or without a token, a real push is refused before anything is sent.
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert push_to_hub.main([str(model_dir), "tester/offline"]) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert push_to_hub.main([str(model_dir), "tester/offline"]) == 2
    assert "--token" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        push_to_hub.main([str(model_dir), "tester/bad", "--stand_in_labels"])
    assert "--labels_description" in capsys.readouterr().err


def test_help_documents_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        push_to_hub.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--private", "--revision", "--commit_message", "--token", "--license", "--dry_run",
                   "--dry_run_dir", "--labels_description", "--stand_in_labels", "MODEL_DIR", "training_args.bin"):
        assert option in text, option


def test_trainer_push_to_hub_uploads_the_model(hub, tmp_path, monkeypatch):
    """The Trainer's own push (`push_to_hub=True, hub_model_id, hub_token`) with our trainer and model, in this
    process: huggingface_hub read HF_ENDPOINT at import, so its constants and transformers' shared HfApi are
    pointed at the loopback Hub instead."""
    import transformers.utils.hub as transformers_hub
    from huggingface_hub import HfApi, constants
    from transformers import TrainingArguments

    from modeling_mtqnet.training.data import SpeechQualityCollator
    from modeling_mtqnet.training.trainer import MTQNetTrainer

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(transformers_hub, "_hf_api", HfApi(endpoint=hub.url, library_name="transformers"))
    monkeypatch.delenv("HF_TOKEN", raising=False)  # the Trainer must send hub_token
    monkeypatch.setenv("HF_XET_CACHE", str(tmp_path / "xet"))  # upload_folder's xet session logs there, not ~/.cache
    rows = [{"input_values": noisy_tone(0.3, snr, seed=i), "labels": [3.0, 3.5, 3.2]} for i, snr in enumerate((0, 20))]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2,
                             report_to="none", save_strategy="no", use_cpu=True, push_to_hub=True,
                             hub_model_id="tester/trainer-push", hub_token="hf_trainer_token",
                             remove_unused_columns=False, label_names=["labels", "pseudo_labels"], disable_tqdm=True)
    model = build_model(seed=3)
    trainer = MTQNetTrainer(model=model, args=args, train_dataset=rows, data_collator=SpeechQualityCollator(),
                            processing_class=MTQNetFeatureExtractor.from_model_config(model.config))
    assert "tester/trainer-push" in hub.repos  # created by Trainer.__init__
    # No trainer.train(): a training step adds seconds and nothing to the push path (save_model + upload_folder).
    commit = trainer.push_to_hub(commit_message="End of training")
    assert commit.commit_url.startswith(hub.url)
    files = hub.files("tester/trainer-push")
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "training_args.bin",
            *CODE_FILES} <= set(files)
    assert files["model.safetensors"] == (tmp_path / "out" / "model.safetensors").read_bytes()
    assert json.loads(files["config.json"])["auto_map"]["AutoModel"].startswith("modeling_mtqnet.")
    assert hub.repos["tester/trainer-push"]["commits"][-1]["summary"] == "End of training"
    assert "hf_trainer_token" in hub.tokens
    assert hub.unhandled == []


def test_a_folder_saved_before_the_fifth_code_file_uploads_its_own_four(tmp_path):
    """A folder saved by 0.1.0 (four code files; its modeling file imports no wavlm_attention.py) is pushed as it is."""
    old = Path(__file__).resolve().parents[1] / "fixtures" / "saved_model_0.1.0_aligned"
    folder = tmp_path / "old"
    shutil.copytree(old, folder)
    names = push_to_hub.validate_model_dir(folder)
    assert sorted(name for name in names if name.endswith(".py")) == sorted(p.name for p in old.glob("*.py"))
    assert "wavlm_attention.py" not in names
