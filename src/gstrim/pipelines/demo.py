"""`gstrim demo`: the whole pipeline on the built-in example scene, sized for a laptop CPU.

The example is regenerated only when missing or made with another seed, and the baseline resumes from
its checkpoint, so an interrupted demo picks up where it stopped and a finished one reruns in seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gstrim.compress.stages import CompressConfig
from gstrim.data import load_dataset
from gstrim.example import GENERATOR_VERSION, generate_example
from gstrim.io.model import read_config, resolve_recorded
from gstrim.pipelines.compress import compress_model
from gstrim.pipelines.inputs import RunControl
from gstrim.pipelines.train import TrainSetup, train_model
from gstrim.pipelines.trim import trim_scene
from gstrim.prune.strategy import TrimConfig
from gstrim.train import DensifyConfig, TrainConfig

# A short 3DGS schedule for 200x200 views: fewer random starting points than the 100,000 of 3DGS, SH
# degree raised every fifth of the run, densification from iteration 300 to 60 % of the run.
DEMO_INIT_POINTS = 10_000


def _example_is_current(data_dir: Path, seed: int) -> bool:
    meta = data_dir / "gstrim_example.json"
    if not meta.is_file():
        return False
    info = json.loads(meta.read_text())
    return info.get("seed") == seed and info.get("generator_version") == GENERATOR_VERSION


def run_demo(out: Path, *, seed: int = 0, iterations: int = 2_000) -> dict:
    data_dir, model_dir = out / "data", out / "baseline"
    if not _example_is_current(data_dir, seed):
        generate_example(data_dir, seed=seed, overwrite=True)
    dataset = load_dataset(data_dir)
    saved = read_config(model_dir)
    resume = saved is not None and saved["train"]["seed"] == seed and saved["train"]["iterations"] == iterations
    if saved is not None and not resume:
        shutil.rmtree(model_dir)
    config = TrainConfig(iterations=iterations, sh_interval=max(iterations // 5, 1), seed=seed)
    densify = DensifyConfig(start=min(300, iterations // 4), stop=int(0.6 * iterations), every=100)
    setup = TrainSetup(init_points=DEMO_INIT_POINTS, save_iterations=[], densify=densify)
    trained = train_model(data_dir, model_dir, config, setup, RunControl(resume=resume))
    trimmed = _trim(model_dir, out / "trimmed", iterations, seed, dataset.kind)
    compressed = _compress(out / "trimmed", out / "compressed", iterations, seed)
    return {"dataset": dataset, "train": trained, "trim": trimmed, "compress": compressed}


def _trim(model_dir: Path, trim_dir: Path, iterations: int, seed: int, data_kind: str):
    """Trimming the Fat on the baseline: 75 % removed over 10 prune steps, then a quarter of the baseline's
    length of fine-tuning, scoring each step on 20 training views, with the default recipe (the example is a
    synthetic object: the objects recipe)."""
    every = max(iterations // 40, 1)
    config = TrimConfig(target_removal=0.75, steps=10, every=every, finetune=max(iterations // 4, 1),
                        stats_views=20, seed=seed, preset="cpu").with_recipe(data_kind)  # as the run records it
    saved = read_config(trim_dir)
    same_input = saved is not None and resolve_recorded(saved["input"], trim_dir).is_relative_to(model_dir.resolve())
    if same_input and saved.get("trim") == config.to_dict():
        return trim_scene(None, trim_dir, control=RunControl(resume=True))
    if trim_dir.exists():
        shutil.rmtree(trim_dir)
    return trim_scene(model_dir, trim_dir, config)


def _compress(trim_dir: Path, compress_dir: Path, iterations: int, seed: int):
    """c3dgs compression of the trimmed scene, fine-tuned for half the baseline's length (1,000 iterations
    for the default demo, the CPU default); resumed when it was interrupted."""
    config = CompressConfig(qat_iterations=max(iterations // 2, 1), seed=seed)
    saved = read_config(compress_dir)
    if saved is not None and saved.get("compress") == config.to_dict():
        return compress_model(None, compress_dir, control=RunControl(resume=True))
    if compress_dir.exists():
        shutil.rmtree(compress_dir)
    return compress_model(trim_dir, compress_dir, config)
