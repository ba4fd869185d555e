"""Shared fixtures: the real samples in ../shared (skipped when absent), a few real
photographs that ship with scikit-image, and a place to report measured figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
_REPORT: dict[str, str] = {}


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared/data, or skip: the suite must pass on a machine without it."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"real samples not available ({data} is absent)")
    return data


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    ref = SHARED / "reference"
    if not ref.is_dir():
        pytest.skip(f"reference layouts not available ({ref} is absent)")
    return ref


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real photograph (512x512 RGB) that ships inside scikit-image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def dlib_backend():
    from dffr.regions import get_backend

    return get_backend("dlib")


@pytest.fixture(scope="session")
def report():
    """report(name, text): a measured figure, printed at the end of the run."""

    def add(name: str, text: str) -> None:
        _REPORT[name] = text

    return add


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("measured")
        for name, text in sorted(_REPORT.items()):
            terminalreporter.write_line(f"{name}: {text}")
