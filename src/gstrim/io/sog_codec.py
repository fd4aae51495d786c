"""SOG's numbers apart from its files: the writer's codebooks (256-entry scalar codebooks and the SH palette,
fitted by importance-weighted k-means), the encodings of positions, rotations and opacities, what a SOG file
decodes to (`quantize`), and the quantiser format-aware fine-tuning optimises through (`SogQuantiser`).
The file layout, its writer and its bounded reader are `io.sog`; the encodings follow the PlayCanvas manual's
SOG description (see there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gstrim.errors import ConfigError
from gstrim.io.packing import from_smallest_three, largest_first, others, sigmoid_logit_clamped, to_uint, unit_quats
from gstrim.io.quantiser import Params, Quantiser
from gstrim.kmeans import nearest, weighted_kmeans
from gstrim.options import option
from gstrim.scene import PARAM_NAMES, GaussianScene

CODEBOOK = 256
PALETTE_ROW = 64
MAX_PALETTE = 65536
SQRT2 = math.sqrt(2)


@dataclass
class SogOptions:
    """The writer's choices (`gstrim export` flags)."""
    palette: int | None = option(None, "SOG SH palette entries (default: a quarter of the Gaussians, in rows of 64)",
                                 flag="--sog-palette")
    seed: int = 0  # of the codebook fits; `export` sets its own

    def validate(self) -> None:
        if self.palette is not None and not 1 <= self.palette <= MAX_PALETTE:
            raise ConfigError(f"{{palette}} must be within 1-{MAX_PALETTE}, got {self.palette}", "palette")


@dataclass
class SogCodebooks:
    """The writer's tables: 256-entry codebooks of log-scales, DC values and SH values, and the SH palette
    with each Gaussian's label (scene order)."""

    scales: torch.Tensor  # [256]
    sh0: torch.Tensor  # [256]
    sh: torch.Tensor  # [256] (empty without higher SH bands)
    palette: torch.Tensor  # [P, K, 3]
    labels: torch.Tensor  # [N] int64

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"scales": self.scales, "sh0": self.sh0, "sh": self.sh, "palette": self.palette, "labels": self.labels}


def budget_options(gaussians: int) -> list[dict]:
    """What `export --max-loss` tries: palettes from a sixty-fourth of the Gaussians up to half of them, in
    whole rows of 64 entries."""
    sizes = {min(MAX_PALETTE, max(64, 64 * round(gaussians / share / 64))) for share in (64, 32, 16, 8, 4, 2)}
    return [{"palette": size} for size in sorted(sizes)]


def default_palette_size(n: int) -> int:
    """A quarter of the Gaussians (c3dgs's codebook size at most, as `gstrim compress`), in whole palette
    rows (64), at most 65,536. splat-transform 3.7 uses min(64, 2^floor(log2(N / 1024))) x 1024 (16,384
    entries for 20k Gaussians), which dominates the file of a small scene; sensitivity-weighted, fine-tuned
    palettes need fewer entries. On chair_400 trimmed 80 % (9,089 Gaussians) fine-tuned through SOG, an
    eighth lost 0.15 dB more than a quarter (docs/formats.md)."""
    return int(min(MAX_PALETTE, max(PALETTE_ROW, math.ceil(n / 4 / PALETTE_ROW) * PALETTE_ROW)))


# ---- codebooks ----------------------------------------------------------------------------------------
def scalar_codebook(values: torch.Tensor, weights: torch.Tensor | None = None, size: int = CODEBOOK,
                    iterations: int = 20, sample: int = 1 << 20, seed: int = 0) -> torch.Tensor:
    """`size` sorted centroids of scalar values by weighted 1-D k-means (Lloyd), seeded at weighted
    quantiles; a random subsample of at most `sample` values."""
    v = values.detach().reshape(-1).double().cpu().numpy()
    w = np.ones_like(v) if weights is None else weights.detach().reshape(-1).double().cpu().numpy()
    if len(v) == 0:
        return torch.zeros(size)
    if len(v) > sample:
        pick = np.random.default_rng(seed).choice(len(v), sample, replace=False)
        v, w = v[pick], w[pick]
    order = np.argsort(v)
    v, w = v[order], np.maximum(w[order], 0) + 1e-12
    cdf = np.cumsum(w) / w.sum()
    centroids = v[np.minimum(np.searchsorted(cdf, (np.arange(size) + 0.5) / size), len(v) - 1)]
    for _ in range(iterations):
        labels = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, v)
        mass = np.bincount(labels, w, minlength=size)
        total = np.bincount(labels, w * v, minlength=size)
        centroids = np.sort(np.where(mass > 0, total / np.maximum(mass, 1e-300), centroids))
    return torch.from_numpy(centroids.astype(np.float32))


def nearest_entry(values: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Label of the nearest codebook entry of each value (any codebook order)."""
    sorted_book, order = torch.sort(codebook.detach())
    mids = (sorted_book[1:] + sorted_book[:-1]) / 2
    return order[torch.searchsorted(mids.contiguous(), values.detach().contiguous())]


def fit_codebooks(scene: GaussianScene, importance: torch.Tensor | None = None, palette_size: int | None = None,
                  steps: int = 50, seed: int = 0, device: torch.device | str = "cpu") -> SogCodebooks:
    """Codebooks for a scene; `importance` [N] (e.g. c3dgs's colour sensitivity) weights every fit; the SH
    palette's k-means runs on `device`."""
    n, k = len(scene), scene.shN.shape[1]
    w = torch.ones(n) if importance is None else importance.detach().cpu().float()
    p = {name: v.detach().cpu().float() for name, v in scene.params().items()}
    scales = scalar_codebook(p["scales"], w[:, None].expand(n, 3))
    sh0 = scalar_codebook(p["sh0"][:, 0], w[:, None].expand(n, 3))
    if k == 0 or n == 0:
        return SogCodebooks(scales, sh0, torch.zeros(0), torch.zeros(0, k, 3), torch.zeros(n, dtype=torch.int64))
    size = min(palette_size or default_palette_size(n), n, MAX_PALETTE)
    flat = p["shN"].reshape(n, 3 * k).to(device)
    generator = torch.Generator().manual_seed(seed)
    palette = weighted_kmeans(flat, w.to(device), size, steps=steps, batch=min(n, 32768), generator=generator)
    labels = nearest(flat, palette).cpu()
    palette = palette.cpu()
    sh = scalar_codebook(palette, None)
    return SogCodebooks(scales, sh0, sh, palette.reshape(-1, k, 3), labels)


# ---- the quantiser --------------------------------------------------------------------------------------
def _log_transform(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def _inverse_log_transform(v: torch.Tensor) -> torch.Tensor:
    return torch.sign(v) * torch.expm1(v.abs())


def means_range(means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lt = _log_transform(means.double())
    if len(lt) == 0:
        return torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    return lt.amin(0).float().double(), lt.amax(0).float().double()  # as meta.json stores them (float32)


def means_codes(means: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return to_uint(65535 * (_log_transform(means.double()) - lo) / span, 65535)


def means_decode(codes: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return _inverse_log_transform(lo + span * (codes.double() / 65535))


def quat_codes(quats: torch.Tensor) -> torch.Tensor:
    index, q = largest_first(unit_quats(quats.double()))
    three = q.gather(1, others(index))
    stored = to_uint(255 * (three * (SQRT2 / 2) + 0.5))
    return torch.cat([stored, (252 + index)[:, None]], dim=1)


def quat_decode(codes: torch.Tensor) -> torch.Tensor:
    tag = codes[:, 3]
    valid = (tag >= 252) & (tag <= 255)
    three = (codes[:, :3].double() / 255 * 2 - 1) / SQRT2
    q = from_smallest_three((tag - 252).clamp(0, 3), three)
    identity = torch.tensor([1.0, 0, 0, 0], dtype=q.dtype).expand_as(q)
    return torch.where(valid[:, None], q, identity).float()


def alpha_codes(opacities: torch.Tensor) -> torch.Tensor:
    return to_uint(torch.sigmoid(opacities.double()) * 255)


def _decoded(scene: GaussianScene, books: SogCodebooks, through) -> GaussianScene:
    """What a SOG file of the scene with these codebooks decodes to, in the scene's order; `through(x, value)`
    attaches to each decoded `value` the gradient meant for the raw `x` (or none)."""
    with torch.no_grad():
        lo, hi = means_range(scene.means.detach())
        means = means_decode(means_codes(scene.means.detach(), lo, hi), lo, hi).float()
        quats = quat_decode(quat_codes(scene.quats.detach()))
        opacities = sigmoid_logit_clamped(alpha_codes(scene.opacities.detach()).double() / 255).float()

    def pick(x: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
        book = book.to(x)
        return through(x, book[nearest_entry(x, book)])

    n, k = len(scene), scene.shN.shape[1]
    shN = scene.shN.new_zeros(n, k, 3)
    if k and n:
        shN = pick(books.palette.to(scene.shN), books.sh)[books.labels.to(scene.shN.device)]
    return GaussianScene(means=through(scene.means, means.to(scene.means)),
                         quats=through(scene.quats, quats.to(scene.quats)),
                         opacities=through(scene.opacities, opacities.to(scene.opacities)),
                         scales=pick(scene.scales, books.scales), sh0=pick(scene.sh0, books.sh0), shN=shN)


def quantize(scene: GaussianScene, books: SogCodebooks) -> GaussianScene:
    """What a SOG file of the scene with these codebooks decodes to, in the scene's order (no gradient:
    format-aware fine-tuning adds a straight-through one)."""
    with torch.no_grad():
        return _decoded(scene, books, lambda x, value: value)


def fake_quantize(scene: GaussianScene, books: SogCodebooks) -> GaussianScene:
    """`quantize` with gradients: straight through to the scene's own values, and to the codebook entries
    (and palette) that the labels pick, so fine-tuning optimises both."""
    return _decoded(scene, books, lambda x, value: value + (x - x.detach()))


# ---- format-aware fine-tuning -----------------------------------------------------------------------------
_BOOKS = {"scales": "book_scales", "sh0": "book_sh0", "sh": "book_sh", "palette": "palette"}


class SogQuantiser(Quantiser):
    """Fine-tunes the scene's raw parameters and SOG's codebooks and SH palette together; each Gaussian's palette
    label is fixed (fitted once, weighted by the importance the context gives: c3dgs's colour sensitivity)."""

    rates = {"book_scales": "scales", "book_sh0": "sh0", "book_sh": "shN", "palette": "shN"}

    def __init__(self, books: SogCodebooks, write: Callable[[Path, GaussianScene, SogCodebooks], None]):
        self.books, self._write = books, write  # the file's writer (io.sog.write_sog)

    def init_params(self, scene: GaussianScene) -> Params:
        params = {k: v for k, v in scene.params().items() if k != "shN"}  # the palette and labels stand for it
        return params | {name: getattr(self.books, field).clone().float() for field, name in _BOOKS.items()}

    def _books(self, params: Params) -> SogCodebooks:
        return SogCodebooks(**{field: params[name] for field, name in _BOOKS.items()},
                            labels=self.books.labels.to(params["means"].device))

    def raw_scene(self, params: Params) -> GaussianScene:
        shN = params["palette"].new_zeros(len(params["means"]), params["palette"].shape[1], 3)
        return GaussianScene(**{k: params[k] for k in PARAM_NAMES if k != "shN"}, shN=shN)

    def decode(self, params: Params) -> GaussianScene:
        return fake_quantize(self.raw_scene(params), self._books(params))

    def write(self, path: Path, params: Params) -> None:
        with torch.no_grad():
            detached = {k: v.detach().cpu() for k, v in params.items()}
            self._write(path, self.raw_scene(detached), self._books(detached))

    def state_dict(self) -> dict:
        return {"labels": self.books.labels.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.books.labels = state["labels"]

    def cached_state(self) -> dict:
        return self.books.tensors()

    def details(self) -> dict:
        return {"sog_palette": len(self.books.palette)}
