"""`Trainer`: the plain optimisation loop every gstrim run shares (training, fine-tuning after pruning,
quantisation-aware fine-tuning); a `Strategy` decides how the population changes.

One step: let the strategy edit the population (`step_begin`), pick the next view (a random permutation
of the training views, drawn again when used up, as 3DGS does), decode the parameters into a scene
(`Parameterization`; the raw tensors by default) and render it at the active SH degree, let the strategy
read the render, take the photometric loss, backward, step every Adam, let the strategy read the
gradients. Everything random comes from one seeded generator whose state is checkpointed, so a resumed
run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from gstrim.camera import Camera
from gstrim.metrics.image import psnr
from gstrim.options import option
from gstrim.render import rasterize, resolve_device
from gstrim.scene import GaussianScene
from gstrim.train.loss import SSIM_WEIGHT, photometric_loss
from gstrim.train.optim import LearningRates
from gstrim.train.parameterization import Parameterization, RawParameters
from gstrim.train.strategy import Strategy


@dataclass
class TrainConfig:
    iterations: int = option(30_000, "training iterations")
    sh_degree: int = option(3, "final SH degree, raised by one every --sh-interval iterations", choices=range(4))
    sh_interval: int = option(1_000, "iterations between SH degree raises (0: the final degree from the start)")
    ssim_weight: float = option(SSIM_WEIGHT, "weight of the D-SSIM term of the loss (3DGS: 0.2)")
    lrs: LearningRates = field(default_factory=LearningRates)  # of the default (raw) parameterisation
    seed: int = option(0, "seed of the view order and of every random choice")
    device: str = "auto"  # "auto": CUDA (gsplat) when available, else the CPU rasterizer

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**{**d, "lrs": LearningRates(**d["lrs"])})


class Trainer:
    def __init__(self, scene: GaussianScene, cameras: list[Camera], *, extent: float, config: TrainConfig,
                 strategy: Strategy | None = None, background: tuple | None = None,
                 parameterization: Parameterization | None = None):
        if not cameras:
            raise ValueError("training needs at least one camera")
        self.cameras = cameras
        self.extent = extent
        self.config = config
        self.strategy = strategy or Strategy()
        self.parameterization = parameterization or RawParameters(config.lrs)
        self.background = background
        self.device = resolve_device(config.device)
        self.params = {k: torch.nn.Parameter(v.detach().float().to(self.device).clone())
                       for k, v in self.parameterization.init_params(scene).items()}
        self.optimizers = self.parameterization.make_optimizers(self.params, extent)
        self.state = self._to_device(self.strategy.initialize_state(len(scene)))
        self.generator = torch.Generator().manual_seed(config.seed)  # on the CPU for every device
        self._targets: dict[int, torch.Tensor] = {}
        self.step = 0
        self._order = torch.empty(0, dtype=torch.long)

    # ---- the population ------------------------------------------------------------------------
    def scene(self) -> GaussianScene:
        """The current Gaussians, detached, on the CPU (a snapshot to save or evaluate)."""
        with torch.no_grad():
            scene = self.parameterization.decode(self.params)
        return GaussianScene(**{k: v.detach().cpu().clone() for k, v in scene.params().items()})

    def __len__(self) -> int:
        return self.params["means"].shape[0]  # every parameterisation keeps per-Gaussian positions

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
        key = id(camera)  # kept on the device as stored (uint8 photos), decoded there on each use
        if key not in self._targets:
            self._targets[key] = camera.stored().to(self.device)
        return camera.decode(self._targets[key])

    def _next_camera(self) -> Camera:
        position = self.step % len(self.cameras)
        if position == 0 or self._order.numel() != len(self.cameras):
            self._order = torch.randperm(len(self.cameras), generator=self.generator)
        return self.cameras[int(self._order[position])]

    # ---- one iteration -------------------------------------------------------------------------
    def train_step(self) -> dict:
        cfg = self.config
        self.strategy.step_begin(self.params, self.optimizers, self.state, self.step, self.generator)
        camera = self._next_camera()
        self.parameterization.update_learning_rates(self.optimizers, self.step, cfg.iterations, self.extent)
        out = rasterize(self.parameterization.decode(self.params), camera, sh_degree=self.active_sh_degree(),
                        background=self.background)
        self.strategy.step_pre_backward(self.params, self.optimizers, self.state, self.step, out)
        target = self._target(camera)
        loss = photometric_loss(out.image, target, cfg.ssim_weight)
        loss.backward()
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.strategy.step_post_backward(self.params, self.optimizers, self.state, self.step, out)
        self.step += 1
        with torch.no_grad():  # left on the device: reading them waits for the GPU (loop.fit reads now and then)
            return {"loss": loss.detach(), "psnr": psnr(out.image.clamp(0, 1), target)}

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
            "parameterization": self.parameterization.state_dict(),
        }

    def load_state_dict(self, d: dict) -> None:
        self.step = int(d["step"])
        self.params = {k: torch.nn.Parameter(v.to(self.device).clone()) for k, v in d["params"].items()}
        self.optimizers = self.parameterization.make_optimizers(self.params, self.extent)
        self.load_optimizer_state(d["optimizers"])
        self.state = self._to_device(dict(d["strategy_state"]))
        self.generator.set_state(d["generator"])
        self._order = d["order"].clone()
        self.parameterization.load_state_dict(d.get("parameterization", {}))

    def load_optimizer_state(self, states: dict) -> None:
        """Adam moments and step counts from a checkpoint of the same parameters; the learning rates stay
        this trainer's (a fine-tuning run continues a training run's moments at its own rates)."""
        for k, opt in self.optimizers.items():
            rates = [group["lr"] for group in opt.param_groups]
            opt.load_state_dict(states[k])
            for group, lr in zip(opt.param_groups, rates, strict=True):
                group["lr"] = lr
