"""The smallest file within a quality budget (`compress --max-loss DB`): a search over compression settings
that fine-tunes as few of them as it can.

Every candidate (colour and shape codebook sizes x share of Gaussians with view-dependent colour x bits of
the higher SH bands) is first sized and
scored cheaply: its codebooks are built, the file written to memory (its size), and its decoding rendered
without fine-tuning on a few test views (its *proxy* loss). Quantisation-aware fine-tuning then wins back
part of that loss, about the same share for neighbouring settings (on chair's 80 % trim 31-41 % of it
stayed); the search predicts the verified loss from the proxy (`Search.predict`: the proxy as it is before
any fine-tuning, a safe first point; then scaled by the verified share; then a line through the verified
points) and after each full fine-tuning of a candidate (its *verified* loss, on every test view) tries the
smallest candidate the prediction puts within the budget. It stops after `max_verifications` fine-tunings or when no
smaller candidate is predicted within budget, and returns the smallest verified one within it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from gstrim.compress.codebooks import CODEBOOK_SHARE

MARGIN_DB = 0.02  # predicted losses this close to the budget are not trusted
MAX_VERIFICATIONS = 3
RATIO_RANGE = (0.1, 1.0)  # of the proxy loss that fine-tuning leaves (chair: 0.31-0.41, docs/compression.md)
SH_SHARES = (1.0, 0.5, 0.25)
SH_ENTRIES = (4096, 1024, 256)
SHAPE_ENTRIES = (4096, 1024)
SH_BITS = (8, 6)


@dataclass
class Point:
    name: str
    settings: dict  # CompressConfig fields
    bytes: int = 0
    proxy_loss: float = float("nan")  # dB below the input before fine-tuning (a few test views)
    loss: float | None = None  # dB below the input of the written file (every test view); None: not verified

    def to_json(self) -> dict:
        return asdict(self)


def candidates(sh_shares=SH_SHARES, sh_entries=SH_ENTRIES, shape_entries=SHAPE_ENTRIES,
               sh_bits=SH_BITS) -> list[Point]:
    return [Point(f"sh{share:g}-k{entries}-s{shapes}-b{bits}",
                  {"sh_share": share, "codebook_sh": entries, "codebook_shape": shapes, "sh_bits": bits})
            for share in sh_shares for entries in sh_entries for shapes in shape_entries for bits in sh_bits]


def distinct(points: list[Point], gaussians: int, keep_sh: float, keep_shape: float) -> list[Point]:
    """The points whose codebooks differ: a codebook holds at most a quarter of the Gaussians it clusters
    (`compress.codebooks`), so on a small scene several requested sizes build the same one."""
    def entries(requested: int, count: int, keep: float) -> int:
        return min(requested, max(1, (count - round(keep * count)) // CODEBOOK_SHARE))

    seen, out = set(), []
    for p in points:
        with_sh = round(p.settings.get("sh_share", 1.0) * gaussians)
        key = (with_sh, entries(p.settings.get("codebook_sh", 4096), with_sh, keep_sh),
               entries(p.settings.get("codebook_shape", 4096), gaussians, keep_shape), p.settings.get("sh_bits", 8))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


@dataclass
class Search:
    budget: float
    points: list[Point]
    max_verifications: int = MAX_VERIFICATIONS
    order: list[str] = field(default_factory=list)  # names in the order they were verified

    @property
    def verified(self) -> list[Point]:
        return [p for p in self.points if p.loss is not None]

    def predict(self, point: Point) -> float:
        """The fine-tuned loss the verified points predict for `point`: the proxy itself before any; then the
        proxy scaled by the newest verified point's ratio (0.1-1: fine-tuning wins back a share of the loss,
        never more than all of it); from two points on, the least-squares line through them when it rises."""
        done = self.verified
        if len(done) >= 2:
            x = [p.proxy_loss for p in done]
            y = [p.loss for p in done]
            mx, my = sum(x) / len(x), sum(y) / len(y)
            sxx = sum((a - mx) ** 2 for a in x)
            slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx if sxx > 0 else 0.0
            if slope > 0:
                return my + slope * (point.proxy_loss - mx)
        if not self.order:
            return point.proxy_loss
        newest = next(p for p in self.points if p.name == self.order[-1])
        ratio = newest.loss / newest.proxy_loss if newest.proxy_loss > 0 else 1.0
        return min(max(ratio, RATIO_RANGE[0]), RATIO_RANGE[1]) * point.proxy_loss

    def choice(self) -> tuple[Point, bool]:
        """(the smallest verified point within budget, True), or (the verified point closest to it, False)."""
        best = self.best()
        return (best, True) if best is not None else (min(self.verified, key=lambda p: p.loss), False)

    def best(self) -> Point | None:
        within = [p for p in self.verified if p.loss <= self.budget]
        return min(within, key=lambda p: p.bytes) if within else None

    def next_point(self) -> Point | None:
        if len(self.order) >= self.max_verifications:
            return None
        best = self.best()
        options = [p for p in self.points if p.loss is None and self.predict(p) <= self.budget - MARGIN_DB
                   and (best is None or p.bytes < best.bytes)]
        if not options and best is None and not self.verified:
            # nothing predicted within budget: verify the best-quality candidate
            options = [min(self.points, key=lambda p: p.proxy_loss)]
        if not options and best is None:
            # every verified point missed: the next better-quality unverified one
            worst = min(p.proxy_loss for p in self.verified)
            options = [p for p in self.points if p.loss is None and p.proxy_loss < worst]
            return min(options, key=lambda p: p.proxy_loss) if options else None
        return min(options, key=lambda p: p.bytes) if options else None

    def run(self, verify: Callable[[Point], float], verified: Callable[[], None] = lambda: None) -> Point | None:
        """Verify points until the model has nothing smaller to try (`verified()` after each, to save the
        search); the smallest verified within budget."""
        while (point := self.next_point()) is not None:
            point.loss = verify(point)
            self.order.append(point.name)
            verified()
        return self.best()
