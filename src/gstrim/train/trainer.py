"""`Trainer`: the plain optimisation loop every gstrim run shares (training, fine-tuning after pruning,
quantisation-aware fine-tuning); a `Strategy` decides how the population changes.

One step: pick the next view (a random permutation of the training views, drawn again when used up, as
3DGS does), render it at the active SH degree, let the strategy read the render, take the photometric loss,
backward, step every Adam, let the strategy edit the population. Everything random comes from one seeded
generator whose state is checkpointed, so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from gstrim.data.camera import Camera
from gstrim.metrics.image import psnr
from gstrim.render import rasterize, resolve_device
from gstrim.scene import PARAM_NAMES, GaussianScene
from gstrim.train.loss import SSIM_WEIGHT, photometric_loss
from gstrim.train.optim import LearningRates, make_optimizers, means_lr, set_lr
from gstrim.train.strategy import Strategy


@dataclass
class TrainConfig:
    iterations: int = 30_000
    sh_degree: int = 3  # the degree reached at the end; raised by one every sh_interval iterations
    sh_interval: int = 1_000  # 0: the final degree from the first iteration (fine-tuning)
    ssim_weight: float = SSIM_WEIGHT
    lrs: LearningRates = field(default_factory=LearningRates)
    seed: int = 0
    device: str = "auto"  # "auto": CUDA (gsplat) when available, else the CPU rasterizer

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**{**d, "lrs": LearningRates(**d["lrs"])})


class Trainer:
    def __init__(self, scene: GaussianScene, cameras: list[Camera], *, extent: float, config: TrainConfig,
                 strategy: Strategy | None = None, background: tuple | None = None):
        if not cameras:
            raise ValueError("training needs at least one camera")
        self.cameras = cameras
        self.extent = extent
        self.config = config
        self.strategy = strategy or Strategy()
        self.background = background
        self.device = resolve_device(config.device)
        self.params = {k: torch.nn.Parameter(v.detach().float().to(self.device).clone())
                       for k, v in scene.params().items()}
        self.optimizers = make_optimizers(self.params, config.lrs, extent)
        self.state = self._to_device(self.strategy.initialize_state(len(scene)))
        self.generator = torch.Generator().manual_seed(config.seed)  # on the CPU for every device
        self._targets: dict[int, torch.Tensor] = {}
        self.step = 0
        self._order = torch.empty(0, dtype=torch.long)

    # ---- the population ------------------------------------------------------------------------
    def scene(self) -> GaussianScene:
        """The current Gaussians, detached, on the CPU (a snapshot to save or evaluate)."""
        return GaussianScene(**{k: self.params[k].detach().cpu().clone() for k in PARAM_NAMES})

    def _live_scene(self) -> GaussianScene:
        return GaussianScene(**{k: self.params[k] for k in PARAM_NAMES})

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    def active_sh_degree(self) -> int:
        if self.config.sh_interval <= 0:
            return self.config.sh_degree
        # 3DGS raises the degree at the start of iterations 1000, 2000, ... (counted from 1)
        return min(self.config.sh_degree, (self.step + 1) // self.config.sh_interval)

    def _to_device(self, state: dict) -> dict:
        return {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in state.items()}

    def _target(self, camera: Camera) -> torch.Tensor:
        if self.device.type == "cpu":
            return camera.image
        key = id(camera)
        if key not in self._targets:
            self._targets[key] = camera.image.to(self.device)
        return self._targets[key]

    def _next_camera(self) -> Camera:
        position = self.step % len(self.cameras)
        if position == 0 or self._order.numel() != len(self.cameras):
            self._order = torch.randperm(len(self.cameras), generator=self.generator)
        return self.cameras[int(self._order[position])]

    # ---- one iteration -------------------------------------------------------------------------
    def train_step(self) -> dict:
        cfg = self.config
        camera = self._next_camera()
        set_lr(self.optimizers["means"], means_lr(self.step, cfg.iterations, cfg.lrs, self.extent))
        out = rasterize(self._live_scene(), camera, sh_degree=self.active_sh_degree(),
                        background=self.background)
        self.strategy.step_pre_backward(self.params, self.optimizers, self.state, self.step, out)
        target = self._target(camera)
        loss = photometric_loss(out.image, target, cfg.ssim_weight)
        loss.backward()
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.strategy.step_post_backward(self.params, self.optimizers, self.state, self.step, out,
                                         self.generator)
        self.step += 1
        with torch.no_grad():
            return {"loss": float(loss), "psnr": float(psnr(out.image.clamp(0, 1), target))}

    # ---- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "params": {k: v.detach().cpu().clone() for k, v in self.params.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "strategy_state": {k: (v.cpu().clone() if isinstance(v, torch.Tensor) else v)
                               for k, v in self.state.items()},
            "generator": self.generator.get_state(),
            "order": self._order.clone(),
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, d: dict) -> None:
        self.step = int(d["step"])
        self.params = {k: torch.nn.Parameter(v.to(self.device).clone()) for k, v in d["params"].items()}
        self.optimizers = make_optimizers(self.params, self.config.lrs, self.extent)
        for k, opt in self.optimizers.items():
            opt.load_state_dict(d["optimizers"][k])
        self.state = self._to_device(dict(d["strategy_state"]))
        self.generator.set_state(d["generator"])
        self._order = d["order"].clone()
