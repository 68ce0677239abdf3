"""Shared test set-up: offline datasets, a throwaway datasets cache, the tokenizer, shared data."""

import os
from pathlib import Path

import pytest

os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

# One torch thread: the tests' models are tiny (overhead-bound, so little is lost), and on a busy
# 2-core machine two OpenMP threads that wait on each other were measured ~100x slower.
import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _datasets_cache(tmp_path_factory):
    os.environ["HF_DATASETS_CACHE"] = str(tmp_path_factory.mktemp("hf_datasets_cache"))


@pytest.fixture(scope="session")
def tok():
    from workbench.tokenizer import load_tokenizer

    return load_tokenizer()


def shared(name: str) -> Path:
    """A file of ../shared/data, or skip the test when it is absent (a user's fresh clone)."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not present (shared data is only on development machines)")
    return path
