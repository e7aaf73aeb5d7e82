"""Shared fixtures. Kept torch-optional: the device-side tests run without torch."""

from __future__ import annotations

import random

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Every test starts from fixed seeds and leaves global RNG state as it found it."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    try:
        import torch
    except ImportError:
        torch = None
    torch_state = torch.random.get_rng_state() if torch is not None else None
    random.seed(0)
    np.random.seed(0)
    if torch is not None:
        torch.manual_seed(0)
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    if torch is not None:
        torch.random.set_rng_state(torch_state)


@pytest.fixture(scope="module")
def tflite_file():
    """A tiny .tflite model (converted once per machine by tests/_models.py), or a clean skip."""
    import _models

    reason = _models.tflite_unavailable_reason()
    if reason:
        pytest.skip(f"no .tflite test model: {reason}")
    try:
        return _models.tiny_tflite()
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models: one torch thread is fastest and immune to oversubscription on a busy machine."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
