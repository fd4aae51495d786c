from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gstrim import progress
from gstrim.scene import GaussianScene, num_sh_rest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(*parts: str) -> Path:
    """A path under ../shared/data; skips the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(autouse=True)
def _quiet():
    progress.set_enabled(False)
    yield
    progress.set_enabled(True)


@pytest.fixture
def rng():
    # Fresh inputs every run (the seed is printed on failure by pytest's repr of the fixture value).
    return np.random.default_rng()


def random_scene(rng: np.random.Generator, n: int = 50, sh_degree: int = 3) -> GaussianScene:
    k = num_sh_rest(sh_degree)
    return GaussianScene.from_numpy(
        means=rng.normal(size=(n, 3)),
        scales=rng.normal(-3, 0.5, size=(n, 3)),
        quats=rng.normal(size=(n, 4)),
        opacities=rng.normal(size=n),
        sh0=rng.normal(size=(n, 1, 3)),
        shN=rng.normal(0, 0.1, size=(n, k, 3)),
    )


def assert_scenes_equal(a: GaussianScene, b: GaussianScene) -> None:
    for name, value in a.params().items():
        torch.testing.assert_close(value, getattr(b, name), rtol=0, atol=0, msg=name)
