import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Encoded corpora go to a per-session temporary cache, never the user's ~/.cache."""
    monkeypatch.setenv("SEQTASKS_CACHE", str(tmp_path_factory.getbasetemp() / "seqtasks-cache"))
