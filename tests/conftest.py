"""Session fixtures: one tiny model, its feature extractor and a saved folder."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub: tests never download
# Commands run in-process keep torch's thread count (tests/test_threads.py checks the free-core choice itself).
os.environ.setdefault("MTQNET_THREADS", "all")
# Cached SSL features go to a folder of this test run, never to the user's ~/.cache.
os.environ.setdefault("MTQNET_SSL_CACHE", tempfile.mkdtemp(prefix="mtqnet-ssl-cache-"))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from modeling_mtqnet import MTQNetFeatureExtractor, MTQNetForSpeechQualityAssessment  # noqa: E402
from tests.helpers import build_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model() -> MTQNetForSpeechQualityAssessment:
    return build_model()


@pytest.fixture(scope="session")
def extractor(tiny_model) -> MTQNetFeatureExtractor:
    return MTQNetFeatureExtractor.from_model_config(tiny_model.config)


@pytest.fixture(scope="session")
def saved_model_dir(tmp_path_factory, tiny_model, extractor) -> Path:
    """A saved tiny model folder with its feature extractor and code files."""
    folder = tmp_path_factory.mktemp("tiny_model")
    tiny_model.save_pretrained(folder)
    extractor.save_pretrained(folder)
    return folder
