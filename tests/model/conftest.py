"""Fixtures of the model wing's tests."""

from __future__ import annotations

import pytest

from modeling_mtqnet.model.feature_extraction_mtqnet import MTQNetFeatureExtractor


@pytest.fixture()
def fe() -> MTQNetFeatureExtractor:
    return MTQNetFeatureExtractor()


