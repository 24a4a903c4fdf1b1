"""Shared fixtures: tiny random-weight pipelines saved as diffusers folders and loaded offline."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory):
    """Folder per kind (sd15 ε, sd2 v-prediction, sdxl), written once per test run."""
    from difftech_lab.models.tiny import KINDS, save_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny-pipelines")
    return {kind: save_tiny_pipeline(root / kind, kind) for kind in KINDS}


@pytest.fixture(scope="session")
def tiny_session(tiny_folders):
    """A Session over the tiny random SD 1.x pipeline (images are noise; shapes and numerics are real)."""
    from difftech_lab import Session

    return Session.from_pretrained(tiny_folders["sd15"], progress=False)


@pytest.fixture(scope="session")
def bundled_session():
    """A Session over the bundled tiny-shapes model (tests must not change its state)."""
    from difftech_lab import Session

    return Session(progress=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """The tiny models' ops are too small to gain from threads; on a shared 2-core machine threads only contend."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
