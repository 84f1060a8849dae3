"""Scene-scale depth: anchor the shot's one affine to known distances.

The stitch gives the whole shot ONE affine of true disparity, so a few points with a known
distance pin it for every frame. An anchor is ``frame, x, y, depth[, weight]``: ``frame`` the
plate's frame number, ``x, y`` plate pixels from the top-left corner of the display window (a
pixel's centre is at +0.5), ``depth`` the distance along the camera's viewing axis in scene units
(what a renderer's Z pass holds), ``weight`` optional (default 1).

The fit: 1/depth = a * d + b, with d the shot's normalised disparity at the anchor (0..1 over the
shot's 2nd..98th percentiles, unclipped). It is robust to wrong anchors (a moving object, a
mistyped distance): every pair of anchors at different disparities proposes (a, b); the one that
most anchors agree with (relative depth error <= 10 %, weighted; ties: the smaller weighted median
error) wins; anchors within max(2.5 robust sigmas, 10 %) of it are kept and refitted by weighted
least squares on the relative error, a few times. With fewer
than 5 anchors a wrong one cannot be told from noise: all are fitted. Since depth mode already writes
``z = 1 / (d (1/near - 1/far) + 1/far)``, the fit IS a near/far: near = 1/(a + b), far = 1/b,
so the pass is written by the same code with the shot's own scene-unit near and far.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvd_vfx.errors import InputError
from dvd_vfx.fsutil import sha256_file, write_atomic

MIN_ANCHORS = 3
_MAX_PAIRS = 4000
_MIN_SPREAD = 0.1  # of the shot's 2-98 % disparity range, between the two anchors of a proposal
_MIN_SIGMA = 0.01  # relative depth error: the least noise assumed at an anchor
_AGREE = 0.1  # relative depth error within which an anchor supports a proposal (and is kept)


@dataclass(frozen=True)
class Anchor:
    frame: int
    x: float
    y: float
    depth: float
    weight: float = 1.0


@dataclass(frozen=True)
class AnchorFit:
    """The shot's scene scale: 1/depth = scale * d + shift (d: the shot's normalised disparity)."""

    scale: float
    shift: float
    used: int
    rejected: int
    median_rel_error: float  # |z_fit / z - 1| over the anchors used
    worst_rel_error: float
    rejected_anchors: tuple[int, ...] = ()  # indices (0-based, file order) of anchors left out

    @property
    def near(self) -> float:  # depth at d = 1 (the shot's 98th percentile of disparity)
        return 1.0 / (self.scale + self.shift)

    @property
    def far(self) -> float:  # depth at d = 0 (the shot's 2nd percentile)
        return 1.0 / self.shift

    def header(self, source: str) -> dict:
        return {"file": source, "used": self.used, "rejected": self.rejected, "scale": self.scale,
                "shift": self.shift, "medianRelError": self.median_rel_error,
                "worstRelError": self.worst_rel_error,
                "rejectedAnchors": list(self.rejected_anchors[:100])}  # 0-based, file order

    def describe(self) -> str:
        return (f"{self.used} anchors used, {self.rejected} rejected; depth at the anchors: median error "
                f"{100 * self.median_rel_error:.2f} %, worst {100 * self.worst_rel_error:.2f} %; "
                f"the shot's 2-98 % range is {self.near:.4g}..{self.far:.4g} scene units")


def file_sha256(path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise InputError(f"--anchors {path}: cannot read it ({exc.strerror or exc})") from None


def read_anchors(path) -> list[Anchor]:
    """Anchors from a CSV (header ``frame,x,y,depth[,weight]``) or a JSON list of such objects."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"--anchors {path}: cannot read it ({exc.strerror or exc})") from None
    rows: list[tuple[str, dict]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"--anchors {path}: not valid JSON ({exc})") from None
        return anchors_from_items(data, str(path))
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    missing = [k for k in ("frame", "x", "y", "depth") if k not in fields]
    if missing:
        raise InputError(f"--anchors {path}: the CSV header must name frame,x,y,depth[,weight]; "
                         f"missing {', '.join(missing)} (header: {','.join(reader.fieldnames or [])})")
    for line, row in enumerate(reader, start=2):
        rows.append((f"line {line}", {(k or "").strip().lower(): v for k, v in row.items()}))
    return _parse_rows(rows, str(path))


def anchors_from_items(data, source: str) -> list[Anchor]:
    """Anchors from a list of ``{frame, x, y, depth[, weight]}`` objects (a JSON file, a hook's answer)."""
    if not isinstance(data, list):
        raise InputError(f"--anchors {source}: expected a list of {{frame, x, y, depth[, weight]}} objects, "
                         f"got {type(data).__name__}")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise InputError(f"--anchors {source}: item {i} is not an object with frame, x, y, depth")
    return _parse_rows([(f"item {i}", item) for i, item in enumerate(data)], source)


def _parse_rows(rows: list[tuple[str, dict]], source: str) -> list[Anchor]:
    anchors = []
    for where, row in rows:
        try:
            frame = int(str(row["frame"]).strip())
            x, y, depth = (float(row[k]) for k in ("x", "y", "depth"))
            weight = float(row.get("weight") or 1.0)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"--anchors {source} {where}: needs numbers frame (integer), x, y, depth "
                             f"[, weight]; got {row}") from None
        if not (math.isfinite(depth) and depth > 0):
            raise InputError(f"--anchors {source} {where}: depth {depth} must be a positive distance in scene units")
        if not (math.isfinite(weight) and weight > 0):
            raise InputError(f"--anchors {source} {where}: weight {weight} must be positive")
        anchors.append(Anchor(frame, x, y, depth, weight))
    if len(anchors) < MIN_ANCHORS:
        raise InputError(f"--anchors {source}: {len(anchors)} anchors; at least {MIN_ANCHORS} are needed to fit "
                         "the shot's scale and shift (more, spread over depth and frames, fit better)")
    return anchors


def csv_text(rows) -> str:
    """The CSV ``read_anchors`` takes: ``frame,x,y,depth`` (+ ``,weight`` when the rows carry one).

    rows: :class:`Anchor` objects or ``(frame, x, y, depth[, weight])`` sequences; floats are
    written in full (repr) so they read back exactly.
    """
    rows = [(r.frame, r.x, r.y, r.depth, r.weight) if isinstance(r, Anchor) else tuple(r) for r in rows]
    weighted = any(len(r) > 4 for r in rows)
    lines = ["frame,x,y,depth,weight" if weighted else "frame,x,y,depth"]
    lines += [f"{int(r[0])}," + ",".join(repr(float(v)) for v in r[1:]) for r in rows]
    return "\n".join(lines) + "\n"


def stored_anchors_file(anchors: list[Anchor], folder) -> Path:
    """Write anchors once to ``folder/<sha256 of the CSV>.csv`` (atomic) and return its path.

    Named by content: the same anchors give the same file, so the pass's setup id (which hashes
    the file) stays the same and a re-export hits the cache.
    """
    text = csv_text(anchors)
    path = Path(folder) / f"{hashlib.sha256(text.encode()).hexdigest()}.csv"
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text.encode())
        except OSError as exc:
            raise InputError(f"cannot store the supplied anchors in {path.parent} "
                             f"({exc.strerror or exc}); check that the cache folder is writable") from None
    return path


def check_placement(anchors: list[Anchor], frames: list[int], size: tuple[int, int], source: str) -> None:
    """Every anchor lies on a frame of the shot and inside the plate; else one error naming them."""
    have = set(frames)
    w, h = size
    outside = [f"#{i} (frame {a.frame})" for i, a in enumerate(anchors) if a.frame not in have]
    off = [f"#{i} ({a.x:g}, {a.y:g})" for i, a in enumerate(anchors) if not (0 <= a.x <= w and 0 <= a.y <= h)]
    if outside:
        raise InputError(f"--anchors {source}: anchors {', '.join(outside[:8])}{' ...' if len(outside) > 8 else ''} "
                         f"are on frames outside the shot's {frames[0]}-{frames[-1]}; fix their frame numbers "
                         "(plate frame numbers, e.g. 1001) or render those frames")
    if off:
        raise InputError(f"--anchors {source}: anchors {', '.join(off[:8])}{' ...' if len(off) > 8 else ''} lie "
                         f"outside the {w}x{h} plate (x, y in plate pixels from the display window's top-left "
                         "corner)")


def sample(frame: np.ndarray, x: float, y: float, plate_size: tuple[int, int]) -> float:
    """Bilinear sample of a working-resolution frame [h,w] at plate pixel coordinates (x, y)."""
    h, w = frame.shape
    u = x * w / plate_size[0] - 0.5
    v = y * h / plate_size[1] - 0.5
    u, v = min(max(u, 0.0), w - 1.0), min(max(v, 0.0), h - 1.0)
    x0, y0 = int(math.floor(u)), int(math.floor(v))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    fx, fy = u - x0, v - y0
    top = frame[y0, x0] * (1 - fx) + frame[y0, x1] * fx
    bottom = frame[y1, x0] * (1 - fx) + frame[y1, x1] * fx
    return float(top * (1 - fy) + bottom * fy)


def _rel_errors(a: float, b: float, d: np.ndarray, z: np.ndarray) -> np.ndarray:
    inv = a * d + b
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(1.0 / (inv * z) - 1.0)
    return np.where(inv > 0, err, np.inf)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def _refit(d: np.ndarray, z: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares on the relative error: (a d + b) z = 1."""
    sw = np.sqrt(w)
    A = np.stack([d * z, z], axis=1) * sw[:, None]
    sol, *_ = np.linalg.lstsq(A, sw, rcond=None)
    return float(sol[0]), float(sol[1])


def fit(d, depth, weight=None, *, source: str = "anchors") -> AnchorFit:
    """The robust (scale, shift) of 1/depth = scale * d + shift; InputError when it cannot give
    positive, finite depth over the shot (d in 0..1) or too few anchors agree."""
    d = np.asarray(d, dtype=np.float64)
    z = np.asarray(depth, dtype=np.float64)
    w = np.ones_like(d) if weight is None else np.asarray(weight, dtype=np.float64)
    usable = np.isfinite(d) & np.isfinite(z) & (z > 0)
    idx = np.flatnonzero(usable)
    if idx.size < MIN_ANCHORS:
        raise InputError(f"--anchors {source}: only {idx.size} anchors have a depth pass value; at least "
                         f"{MIN_ANCHORS} are needed")
    dd, zz, ww = d[idx], z[idx], w[idx]
    n = idx.size
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    if len(pairs) > _MAX_PAIRS:
        rng = np.random.default_rng(0)
        pick = rng.choice(len(pairs), size=_MAX_PAIRS, replace=False)
        pairs = [pairs[k] for k in sorted(pick)]
    best = None
    for i, j in pairs:
        if abs(dd[i] - dd[j]) < _MIN_SPREAD:  # too close in disparity to pin a scale
            continue
        a = (1 / zz[i] - 1 / zz[j]) / (dd[i] - dd[j])
        b = 1 / zz[i] - a * dd[i]
        err = _rel_errors(a, b, dd, zz)
        support = float(ww[err <= _AGREE].sum())
        score = _weighted_median(err, ww)
        if best is None or (support, -score) > (best[3], -best[0]):
            best = (score, a, b, support)
    if best is None or not math.isfinite(best[0]):
        raise InputError(f"--anchors {source}: the anchors all sit at about one disparity of the pass (one "
                         "distance); spread them over near and far parts of the shot")
    score, a, b, _ = best
    if n < 5:  # too few to tell a wrong anchor from noise: every anchor counts
        inliers = np.ones(n, dtype=bool)
        a, b = _refit(dd, zz, ww)
    else:
        # least median of squares, then reweighting (Rousseeuw): inliers within 2.5 robust sigmas of
        # the fit, sigma from the median error with the small-sample correction; refit and repeat
        sigma = max(_MIN_SIGMA, 1.4826 * (1 + 5 / (n - 2)) * score)
        for _ in range(3):
            inliers = _rel_errors(a, b, dd, zz) <= max(2.5 * sigma, _AGREE)
            if inliers.sum() < MIN_ANCHORS:
                break
            a, b = _refit(dd[inliers], zz[inliers], ww[inliers])
            err = _rel_errors(a, b, dd, zz)
            sigma = max(_MIN_SIGMA, 1.4826 * float(np.median(err[inliers])))
        inliers = _rel_errors(a, b, dd, zz) <= max(2.5 * sigma, _AGREE)
    if inliers.sum() < MIN_ANCHORS:
        raise InputError(f"--anchors {source}: fewer than {MIN_ANCHORS} anchors agree on one scale (best median "
                         f"error {100 * score:.1f} %); check their depths and frames")
    err = _rel_errors(a, b, dd, zz)[inliers]
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        problem = "infinite or negative depth at the far end of the shot" if b <= 0 else \
            "depth that grows with disparity (near and far swapped)"
        raise InputError(f"--anchors {source}: the fit (1/depth = {a:.4g} d + {b:.4g}) gives {problem}; the anchors "
                         "do not fit this pass's disparity - check for anchors on moving objects or wrong depths")
    rejected = tuple(int(k) for k in idx[~inliers])
    return AnchorFit(scale=a, shift=b, used=int(inliers.sum()), rejected=int(len(d) - inliers.sum()),
                     median_rel_error=float(np.median(err)), worst_rel_error=float(err.max()),
                     rejected_anchors=rejected)
