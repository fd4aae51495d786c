from __future__ import annotations

import os
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


SEED_VARIABLE = "GSTRIM_TEST_SEED"


@pytest.fixture
def rng(request):
    """Fresh random inputs every run; a failing test reports its seed, and GSTRIM_TEST_SEED=S replays it."""
    given = os.environ.get(SEED_VARIABLE)
    seed = int(given) if given else int(np.random.SeedSequence().entropy % 2**63)
    request.node.rng_seed = seed
    return np.random.default_rng(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    seed = getattr(item, "rng_seed", None)
    if report.failed and seed is not None:
        report.sections.append(("random inputs", f"seed {seed}: rerun with {SEED_VARIABLE}={seed}"))


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


@pytest.fixture(scope="session")
def baseline(tmp_path_factory):
    """(dataset folder, model folder) of a tiny trained example scene, shared by the trim and compress tests."""
    from gstrim.example import generate_example
    from gstrim.pipelines.train import TrainSetup, train_model
    from gstrim.train import DensifyConfig, TrainConfig

    root = tmp_path_factory.mktemp("baseline")
    data = generate_example(root / "data", seed=7, n_train=6, n_test=2, size=32, supersample=1)
    train_model(data, root / "model", TrainConfig(iterations=40, sh_degree=1),
                TrainSetup(init_points=600, save_iterations=[], densify=DensifyConfig(start=10, every=10, stop=35)))
    return data, root / "model"


def interrupt_training_at(monkeypatch, step: int):
    """Make the next training loop raise KeyboardInterrupt before `step`; returns the undo."""
    from gstrim.train import Trainer

    original = Trainer.train_step

    def interrupted(self):
        if self.step == step:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    return lambda: monkeypatch.setattr(Trainer, "train_step", original)
