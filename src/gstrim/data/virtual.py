"""Virtual views of a scene that came without its photos, and the scene's own renders as their targets.

Most `.ply` files people hold were trained on photos they do not have. Trimming can still work: the
untrimmed scene renders each view once, and the trim fine-tunes against those renders (self-distillation),
so the loss and every importance score run unchanged.

Where the cameras go:
- `cameras.json` beside the scene (the INRIA model folder layout) gives the capture's own poses;
- otherwise they are sampled. The scene's frame is robust: the median of its opaque Gaussians (opacity
  >= 0.1, or half the largest) and the 95th percentile of their distances from it. Whether to look at the
  scene from outside (an object) or from inside (a room, or an unbounded capture with background all
  around) is read from the scene itself (`Layout`): inside when the centre is empty space enclosed by the
  scene (the nearest 1 % of opaque Gaussians at >= `FREE_CENTRE` x their median distance, and six
  90-degree probe renders from the centre covered to `ENCLOSED_COVERAGE` on average), or when probes
  looking outward from the 95 % sphere still see background (`BEYOND_COVERAGE`). Enclosure alone is not
  enough: an object whose centre lies inside its own body encloses it too. A closed shell around an empty
  centre (a lone hollow ball) cannot be told from a room by geometry: `--views-from` overrides the rule.
  Measured values on real scenes are in docs/pruning.md.
- outside: a Fibonacci spiral of directions over the sphere (over the upper part only with `--up`), at
  three distances around the one where the scene's bounding sphere fills the field of view (the median
  sphere for a subject among surroundings: `SceneFrame.core_radius`), looking at the centre;
- inside: positions in the central part of the scene, away from opaque Gaussians, each looking at a
  random opaque Gaussian at a distance.
Every sampled camera is kept only when a probe render shows the scene covering at least `MIN_COVERAGE` of
it. One view in eight is held out for evaluation, as the 3DGS split of COLMAP captures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from gstrim import progress, timing
from gstrim.camera import Camera
from gstrim.data.dataset import BACKGROUNDS, Dataset
from gstrim.errors import ConfigError, GstrimError
from gstrim.io.model import read_cameras_json
from gstrim.options import option
from gstrim.render import rasterize
from gstrim.scene import GaussianScene

OPAQUE = 0.1  # Gaussians at or above this opacity (or half the largest) define the scene's frame
ENCLOSED_COVERAGE = 0.6  # mean probe alpha from the centre at which the scene counts as enclosing it
FREE_CENTRE = 0.4  # a room's centre is free space: its nearest 1 % of Gaussians lie this far (x the median)
BEYOND_COVERAGE = 0.5  # mean alpha looking outward from the 95 % sphere: background all around (unbounded)
SURROUNDED_TAIL = 2.5  # r95 / median distance from which outside views orbit the median sphere, not the r95 one
MIN_COVERAGE = 0.05  # a sampled view must show the scene over at least this fraction of its pixels
PROBE_SIZE = 32  # pixels of the probe renders (enclosure test and view check)
HOLD_OUT_EVERY = 8  # as the 3DGS COLMAP split
DEFAULT_RESOLUTION = 400
CACHE_BUDGET_BYTES = 4 << 30  # above this the targets are rendered when needed instead of kept
OUTSIDE_DISTANCES = (0.8, 1.0, 1.3)  # x the distance at which the bounding sphere fills the view
UP_AXES = ("+x", "-x", "+y", "-y", "+z", "-z")


@dataclass
class ViewConfig:
    """How photo-free runs place their virtual cameras and render their targets."""

    views: int = option(120, "photo-free: virtual views to sample (1 in 8 held out for evaluation)")
    resolution: int | None = option(None, "photo-free: longest image side in pixels (default: 400, or the size "
                                          "recorded in cameras.json)")
    fov: float = option(50.0, "photo-free: horizontal field of view of sampled views, in degrees")
    views_from: str = option("auto", "photo-free: sample views around the scene (outside: objects), within it "
                                     "(inside: rooms, unbounded captures) or choose from the scene (auto)",
                             choices=("auto", "outside", "inside"))
    up: str | None = option(None, "photo-free: the scene's up axis; outside views then come from above and the "
                                  "side rather than from every direction", choices=UP_AXES)
    target_background: str = option("random", "photo-free: colour behind the targets; random (a colour per view) "
                                               "makes the loss see coverage as well as colour",
                                    choices=("random", "black", "white"))
    targets: str = option("auto", "photo-free: keep every target render in memory (cache), render it when needed "
                                  "(live), or cache when it fits in 4 GiB (auto)", choices=("auto", "cache", "live"))
    ignore_cameras_json: bool = option(False, "photo-free: sample views even when a cameras.json (the capture's "
                                              "poses) lies beside the scene")
    seed: int = 0

    def validate(self) -> None:
        if self.views < 2:
            raise ConfigError(f"{{views}} must be at least 2 (one to train on, one held out), got {self.views}",
                              "views")
        if self.resolution is not None and self.resolution < 8:
            raise ConfigError(f"{{resolution}} must be at least 8 pixels, got {self.resolution}", "resolution")
        if not 1.0 <= self.fov <= 170.0:
            raise ConfigError(f"{{fov}} must be between 1 and 170 degrees, got {self.fov}", "fov")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SceneFrame:
    center: np.ndarray  # [3]
    radius: float  # 95th percentile distance of the opaque Gaussians from the centre
    median_distance: float
    opaque_means: np.ndarray  # [M, 3]

    @property
    def core_radius(self) -> float:
        """The radius outside views frame: the whole scene (r95), or for a subject among its surroundings (a desk,
        a room's far walls: a heavy tail, r95 >= `SURROUNDED_TAIL` x the median distance) the median sphere, so
        that the cameras orbit the subject within its surroundings as a capture does."""
        return self.median_distance if self.radius >= SURROUNDED_TAIL * self.median_distance else self.radius


def scene_frame(scene: GaussianScene, source: Path | str | None = None) -> SceneFrame:
    """The robust centre and size of a scene; an error naming `source` when there is nothing to look at."""
    if len(scene) == 0:
        raise GstrimError("the scene is empty: there is nothing to render views of", source)
    means = scene.means.detach().double().cpu().numpy()
    opacity = torch.sigmoid(scene.opacities.detach()).double().cpu().numpy().reshape(-1)
    opaque = means[opacity >= min(OPAQUE, 0.5 * opacity.max())]  # relative, for faint scenes early in training
    if len(opaque) < 4:
        raise GstrimError(f"the scene is degenerate: only {len(opaque)} of its {len(scene):,} Gaussians carry its "
                          "opacity", source)
    center = np.median(opaque, axis=0)
    distance = np.linalg.norm(opaque - center, axis=1)
    radius = float(np.quantile(distance, 0.95))
    scale = float(np.abs(opaque).max()) or 1.0
    if not radius > 1e-6 * scale:
        raise GstrimError("the scene is degenerate: its opaque Gaussians all sit at one point", source)
    return SceneFrame(center, radius, float(np.median(distance)), opaque)


# ---- cameras ------------------------------------------------------------------------------------------


def intrinsics(width: int, height: int, fov_x_deg: float) -> torch.Tensor:
    fx = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    return torch.tensor([[fx, 0, width / 2], [0, fx, height / 2], [0, 0, 1]], dtype=torch.float32)


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> torch.Tensor:
    """World-to-camera matrix (OpenCV axes: x right, y down, z forward) of a camera at `position` looking at
    `target`; `up` (default: the world axis least parallel to the view) sets the roll."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    if up is None or abs(forward @ up) > 0.999:
        up = np.eye(3)[int(np.argmin(np.abs(forward)))]
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # rows: the camera axes in world coordinates
    viewmat = np.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ position
    return torch.tensor(viewmat, dtype=torch.float32)


def _up_vector(up: str | None) -> np.ndarray | None:
    if up is None:
        return None
    axis = np.zeros(3)
    axis["xyz".index(up[1])] = 1.0 if up[0] == "+" else -1.0
    return axis


def _fibonacci_directions(count: int, up: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """`count` evenly spread unit vectors: over the sphere, or with `up` over elevations -15..80 degrees."""
    i = np.arange(count) + 0.5
    lo, hi = (-1.0, 1.0) if up is None else (math.sin(math.radians(-15)), math.sin(math.radians(80)))
    z = lo + (hi - lo) * i / count
    phi = i * math.pi * (3 - math.sqrt(5)) + rng.uniform(0, 2 * math.pi)
    r = np.sqrt(1 - z * z)
    local = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    if up is None:
        return local
    # rotate the local +z onto `up`
    a = np.eye(3)[int(np.argmin(np.abs(up)))]
    x = np.cross(up, a)
    x /= np.linalg.norm(x)
    y = np.cross(up, x)
    return local @ np.stack([x, y, up])


def coverage(scene: GaussianScene, camera: Camera) -> float:
    """Mean alpha of a low-resolution render of `camera`'s view: how much of it the scene covers."""

    probe = resized(camera, PROBE_SIZE)
    with torch.no_grad():
        return float(rasterize(scene, probe, sh_degree=0, background=(0.0, 0.0, 0.0)).alpha.mean())


def _cube_coverage(scene: GaussianScene, positions: np.ndarray, outward: bool, center: np.ndarray) -> float:
    """Mean coverage of 90-degree probe views along the six axes, from `center` (outward=False) or from each
    of `positions` looking away from `center`."""
    K = intrinsics(PROBE_SIZE, PROBE_SIZE, 90.0)
    views = []
    for axis, position in zip(np.concatenate([np.eye(3), -np.eye(3)]), positions, strict=True):
        origin = position if outward else center
        views.append(coverage(scene, Camera("probe", PROBE_SIZE, PROBE_SIZE, K, look_at(origin, origin + axis))))
    return float(np.mean(views))


@dataclass
class Layout:
    """The measures behind the outside / inside rule (module docstring)."""

    free: float  # 1st percentile distance of the opaque Gaussians from the centre / their median distance
    enclosure: float  # mean coverage of the six axis views from the centre
    beyond: float  # mean coverage of the six axis views from the 95 % sphere, looking outward

    @property
    def side(self) -> str:
        room = self.free >= FREE_CENTRE and self.enclosure >= ENCLOSED_COVERAGE
        unbounded = self.beyond >= BEYOND_COVERAGE
        return "inside" if room or unbounded else "outside"

    def describe(self) -> str:
        return f"free centre {self.free:.2f}, enclosure {self.enclosure:.2f}, beyond {self.beyond:.2f}"


def measure_layout(scene: GaussianScene, frame: SceneFrame) -> Layout:
    distance = np.linalg.norm(frame.opaque_means - frame.center, axis=1)
    free = float(np.quantile(distance, 0.01)) / frame.median_distance
    axes = np.concatenate([np.eye(3), -np.eye(3)])
    enclosed = _cube_coverage(scene, axes, False, frame.center)
    beyond = _cube_coverage(scene, frame.center + frame.radius * axes, True, frame.center)
    return Layout(free, enclosed, beyond)


def choose_side(scene: GaussianScene, frame: SceneFrame, views_from: str) -> tuple[str, Layout | None]:
    """('outside' or 'inside', the measured layout when the rule decided)."""
    if views_from != "auto":
        return views_from, None
    layout = measure_layout(scene, frame)
    return layout.side, layout


def _outside_candidates(frame: SceneFrame, config: ViewConfig, rng: np.random.Generator):
    """Rounds of spirals of `config.views` directions at three distances, each round turned by a random angle,
    so that the views a round keeps are spread over the whole range of directions."""
    up = _up_vector(config.up)
    fit = frame.core_radius / math.sin(math.radians(min(config.fov, 120.0)) / 2)
    while True:
        for k, direction in enumerate(_fibonacci_directions(config.views, up, rng)):
            distance = fit * OUTSIDE_DISTANCES[k % len(OUTSIDE_DISTANCES)]
            yield frame.center + distance * direction, frame.center, up


def _inside_candidates(frame: SceneFrame, config: ViewConfig, rng: np.random.Generator):
    """Positions within half the median distance of the centre, away from the opaque Gaussians, each looking at
    an opaque Gaussian at least a third of the median distance away."""
    sample = frame.opaque_means[rng.permutation(len(frame.opaque_means))[:50_000]]  # for the clearance test
    reach, clearance = 0.5 * frame.median_distance, 0.05 * frame.median_distance
    up = _up_vector(config.up)
    while True:
        direction = rng.normal(size=3)
        position = frame.center + reach * rng.uniform() ** (1 / 3) * direction / np.linalg.norm(direction)
        if np.min(np.linalg.norm(sample - position, axis=1)) < clearance:
            continue
        target = frame.opaque_means[rng.integers(len(frame.opaque_means))]
        if np.linalg.norm(target - position) < frame.median_distance / 3:
            continue
        yield position, target, up


def sample_views(scene: GaussianScene, config: ViewConfig, width: int, height: int,
                 source: Path | str | None = None) -> tuple[list[Camera], str, Layout | None]:
    """`config.views` cameras that see the scene, the side they look from and the layout measured (auto)."""
    frame = scene_frame(scene, source)
    side, layout = choose_side(scene, frame, config.views_from)
    rng = np.random.default_rng(config.seed)
    K = intrinsics(width, height, config.fov)
    tries = 20 * config.views
    candidates = (_outside_candidates if side == "outside" else _inside_candidates)(frame, config, rng)
    cameras: list[Camera] = []
    for attempt, (position, target, up) in enumerate(candidates):
        if len(cameras) == config.views or attempt >= tries:
            break
        camera = Camera(f"virtual_{len(cameras):04d}", width, height, K, look_at(position, target, up))
        if coverage(scene, camera) >= MIN_COVERAGE:
            cameras.append(camera)
    if len(cameras) < 2:
        raise GstrimError(f"the scene is degenerate: only {len(cameras)} of the sampled views see it", source)
    return cameras, side, layout


def find_cameras_json(source: Path) -> Path | None:
    """`cameras.json` beside a scene file, or in the model folder above `point_cloud/iteration_N/`."""
    source = Path(source)
    folder = source if source.is_dir() else source.parent
    for candidate in (folder, folder.parent.parent):
        if (candidate / "cameras.json").is_file():
            return candidate / "cameras.json"
    return None


def resized(camera: Camera, longest: int) -> Camera:
    """`camera` with its longest image side set to `longest` pixels (intrinsics scaled alike)."""
    s = longest / max(camera.width, camera.height)
    w, h = max(1, round(camera.width * s)), max(1, round(camera.height * s))
    K = camera.K.clone()
    K[0] *= w / camera.width
    K[1] *= h / camera.height
    return Camera(camera.name, w, h, K, camera.viewmat)


# ---- targets -------------------------------------------------------------------------------------------


class TeacherCamera(Camera):
    """A virtual camera whose image is the teacher scene's render, 8-bit as a saved PNG would hold it: rendered
    once and kept (`keep=True`) or rendered whenever it is asked for."""

    def __init__(self, camera: Camera, teacher: GaussianScene, background: tuple, keep: bool):
        super().__init__(camera.name, camera.width, camera.height, camera.K, camera.viewmat, background=background)
        self._teacher = teacher
        self._keep = keep
        self._stored: torch.Tensor | None = None  # uint8 [H, W, 3]
        self.renders = 0

    def render_target(self) -> torch.Tensor:
        with torch.no_grad():
            image = rasterize(self._teacher, self, background=self.background).image.clamp(0, 1)
        self.renders += 1
        return (image * 255 + 0.5).to(torch.uint8).cpu()

    def stored(self) -> torch.Tensor:
        stored = self._stored if self._stored is not None else self.render_target()
        if self._keep:
            self._stored = stored
        return stored


def _backgrounds(count: int, kind: str, seed: int) -> list[tuple]:
    if kind != "random":
        return [BACKGROUNDS[kind]] * count
    rng = np.random.default_rng(seed + 1)
    return [tuple(float(c) for c in rng.uniform(0, 1, 3)) for _ in range(count)]


@dataclass
class VirtualViews:
    """What `virtual_dataset` decided, for the run's first line and its records."""

    origin: str  # "cameras.json" or "sampled"
    side: str | None  # outside / inside for sampled views
    layout: Layout | None  # what the automatic rule measured
    cameras_json: Path | None
    cached: bool

    def describe(self, dataset: Dataset) -> str:
        where = (f"the poses of {self.cameras_json}" if self.origin == "cameras.json" else
                 f"sampled {self.side} the scene" + (f" ({self.layout.describe()})" if self.layout else ""))
        w, h = dataset.train[0].width, dataset.train[0].height
        return (f"photo-free: no photos, so the untrimmed scene renders its own targets: {len(dataset.train)} "
                f"virtual views + {len(dataset.test)} held out, {w}x{h}, {where}; targets "
                f"{'rendered once and cached' if self.cached else 'rendered when needed'}")

    def to_dict(self) -> dict:
        layout = None if self.layout is None else asdict(self.layout)
        return {"origin": self.origin, "side": self.side, "layout": layout,
                "cameras_json": None if self.cameras_json is None else str(self.cameras_json), "cached": self.cached}


def virtual_dataset(teacher: GaussianScene, config: ViewConfig, source: Path, device: str | torch.device = "cpu"
                    ) -> tuple[Dataset, VirtualViews]:
    """A dataset of virtual views whose images are `teacher`'s renders (the scene read from `source`)."""
    config.validate()
    teacher = teacher.to(device)  # the views' probes and the targets render on the run's device
    cameras_json = None if config.ignore_cameras_json else find_cameras_json(source)
    if cameras_json is not None:
        scene_frame(teacher, source)  # the same clear error for an empty or degenerate scene
        cameras = read_cameras_json(cameras_json)
        if config.resolution is not None:
            cameras = [resized(c, config.resolution) for c in cameras]
        side = layout = None
    else:
        longest = config.resolution or DEFAULT_RESOLUTION
        cameras, side, layout = sample_views(teacher, config, longest, longest, source)
    target_bytes = sum(c.width * c.height * 3 for c in cameras)
    keep = config.targets == "cache" or (config.targets == "auto" and target_bytes <= CACHE_BUDGET_BYTES)
    backgrounds = _backgrounds(len(cameras), config.target_background, config.seed)
    views = [TeacherCamera(c, teacher, bg, keep) for c, bg in zip(cameras, backgrounds, strict=True)]
    if keep:
        with timing.phase("targets"):
            for view in progress.track(views, "render targets"):
                view.stored()  # renders and keeps the target
    test = [v for i, v in enumerate(views) if i % HOLD_OUT_EVERY == 0]
    train = [v for i, v in enumerate(views) if i % HOLD_OUT_EVERY != 0]
    background = None if config.target_background == "random" else BACKGROUNDS[config.target_background]
    dataset = Dataset(Path(source), "virtual", train, test, None, None, background)
    return dataset, VirtualViews("cameras.json" if cameras_json else "sampled", side, layout, cameras_json, keep)
