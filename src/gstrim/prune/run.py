"""`gstrim trim` in Python: load a trained scene and its photos, prune and fine-tune in a model folder,
evaluate before and after."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gstrim import __version__
from gstrim.data import Dataset, load_dataset
from gstrim.errors import GstrimError
from gstrim.evaluate import Evaluation, evaluate, merge_json, write_results
from gstrim.io.atomic import write_text_atomic
from gstrim.io.model import CONFIG_NAME, load_model, read_config, write_cameras_json, write_cfg_args
from gstrim.prune.trim import TrimConfig, TrimStrategy, finetune_rates, ply_size_mb
from gstrim.render.project import project
from gstrim.scene import GaussianScene
from gstrim.train import run
from gstrim.train.trainer import TrainConfig, Trainer

MIN_IN_VIEW = 0.05  # below this fraction of Gaussians seen by some training camera, the data is another scene


@dataclass
class TrimResult:
    model_dir: Path
    scene: GaussianScene
    input_count: int
    before: Evaluation | None
    after: Evaluation | None
    wall_s: float
    summary: dict


def check_scene_matches(scene: GaussianScene, dataset: Dataset, source: Path) -> None:
    """Refuse a dataset whose training cameras see almost none of the scene."""
    seen = torch.zeros(len(scene), dtype=torch.bool)
    with torch.no_grad():
        for cam in dataset.train:
            proj = project(scene.means, scene.quats, scene.scales, cam.viewmat, cam.K, cam.width, cam.height)
            seen |= proj.radii > 0
    fraction = float(seen.float().mean()) if len(scene) else 0.0
    if fraction < MIN_IN_VIEW:
        raise GstrimError(f"the dataset {dataset.root} does not match this scene: only {100 * fraction:.1f} % of "
                          "its Gaussians are in view of any training camera", source)


def _stats_cameras(dataset: Dataset, views: int | None, seed: int):
    if views is None or views >= len(dataset.train):
        return dataset.train
    if views < 1:
        raise GstrimError(f"--stats-views must be at least 1, got {views}")
    pick = np.random.default_rng(seed).permutation(len(dataset.train))[:views]
    return [dataset.train[i] for i in sorted(pick)]


def trim_scene(scene_path: str | Path, out_dir: str | Path, *, data: str | Path | None = None,
               data_options: dict | None = None, config: TrimConfig | None = None, device: str = "auto",
               resume: bool = False, checkpoint_every: int = 1_000, evaluate_test: bool = True,
               input_evaluation: Evaluation | None = None) -> TrimResult:
    """Trim `scene_path` into `out_dir`. `input_evaluation`: the input's test evaluation when already known
    (another trim of the same scene wrote it to input_results.json), which skips that pass."""
    out_dir = Path(out_dir)
    if resume:
        saved = read_config(out_dir)
        if saved is None or saved.get("verb") != "trim":
            raise GstrimError(f"nothing to resume: no trim {CONFIG_NAME}", out_dir)
        scene_path, config = saved["input"], TrimConfig(**saved["trim"])
        data, data_options = saved["data"]["path"], {k: v for k, v in saved["data"].items() if k != "path"}
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise GstrimError("output folder is not empty; pass --resume to continue its run or choose another", out_dir)
    config = config or TrimConfig()
    config.validate()
    model = load_model(scene_path)
    if data is None:
        data, recorded = model.recorded_dataset()
        data_options = {**recorded, **(data_options or {})}
    data_options = dict(data_options or {})
    dataset = load_dataset(data, **data_options)
    scene = model.scene
    check_scene_matches(scene, dataset, model.source)

    strategy = TrimStrategy(config, _stats_cameras(dataset, config.stats_views, config.seed), dataset.background,
                            len(scene), scene.sh_degree)
    train_config = TrainConfig(iterations=config.iterations, sh_degree=scene.sh_degree, sh_interval=0,
                               lrs=finetune_rates(), seed=config.seed, device=device)
    trainer = Trainer(scene, dataset.train, extent=dataset.extent, config=train_config, strategy=strategy,
                      background=dataset.background)
    if config.stats == "checkpoint" and config.score == "gradient" and not config.no_prune:
        trainer.state.update(_checkpoint_stats(model, len(scene), trainer.device))

    before = None
    if resume:
        elapsed = float(run.resume(trainer, out_dir).get("elapsed", 0.0))
        before = read_input_evaluation(out_dir)
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        run_config = {"gstrim": __version__, "verb": "trim", "input": str(Path(model.source).resolve()),
                      "data": {"path": str(Path(data).resolve()), **data_options}, "trim": config.to_dict()}
        write_text_atomic(out_dir / CONFIG_NAME, json.dumps(run_config, indent=1))
        white = tuple(dataset.background) == (1.0, 1.0, 1.0)
        write_cfg_args(out_dir / "cfg_args", out_dir, run_config["data"], scene.sh_degree, white)
        write_cameras_json(out_dir / "cameras.json", dataset.train + dataset.test)
        if evaluate_test and dataset.test:
            before = input_evaluation or evaluate(scene, dataset.test, label="input", background=dataset.background,
                                                  device=device)
            write_text_atomic(out_dir / "input_results.json", json.dumps(_evaluation_to_json(before)))
        elapsed = 0.0
    wall = run.run(trainer, out_dir, checkpoint_every=checkpoint_every, description="trim", elapsed=elapsed)
    result_scene = trainer.scene()
    after = None
    if evaluate_test and dataset.test:
        after = evaluate(result_scene, dataset.test, label=f"ours_{trainer.step}", background=dataset.background,
                         device=device)
        write_results(out_dir, after)
        if before is not None:
            write_results(out_dir, before)
    summary = _summary(len(scene), result_scene, before, after, wall, config)
    merge_json(out_dir / "results.json", "trim", summary)
    return TrimResult(out_dir, result_scene, len(scene), before, after, wall, summary)


def _checkpoint_stats(model, n: int, device) -> dict:
    state = (model.checkpoint or {}).get("strategy_state", {})
    if "grad2d" not in state or "count" not in state or len(state["grad2d"]) != n:
        raise GstrimError("--stats checkpoint needs a training checkpoint (chkpnt*.pt) with gradient statistics",
                          model.source)
    return {"grad2d": state["grad2d"].to(device), "count": state["count"].to(device)}


def _summary(n_in: int, scene: GaussianScene, before, after, wall: float, config: TrimConfig) -> dict:
    degree = scene.sh_degree
    mb_in, mb_out = ply_size_mb(n_in, degree), ply_size_mb(len(scene), degree)
    out = {
        "variant": "no-prune" if config.no_prune else ("one-shot" if config.one_shot else "iterative"),
        "score": config.score, "gaussians_in": n_in, "gaussians_out": len(scene),
        "removed": 1.0 - len(scene) / n_in, "mb_in": mb_in, "mb_out": mb_out, "ratio": mb_in / mb_out,
        "iterations": config.iterations, "wall_s": wall,
    }
    for name, ev in (("input", before), ("output", after)):
        if ev is not None:
            s = ev.summary()
            out[name] = {k: s[k] for k in ("PSNR", "SSIM", "LPIPS", "render_ms")} | {"fps": 1000 / s["render_ms"]}
    return out


def _evaluation_to_json(ev: Evaluation) -> dict:
    return {"label": ev.label, "gaussians": ev.gaussians, "lpips_label": ev.lpips_label, "ssim_mode": ev.ssim_mode,
            "per_view": ev.per_view}


def read_input_evaluation(out_dir: Path) -> Evaluation | None:
    """The input's test evaluation a trim run saved in `out_dir`, if any."""
    path = Path(out_dir) / "input_results.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return Evaluation(d["label"], d["gaussians"], d["lpips_label"], d["ssim_mode"], d["per_view"])
