"""What is on disk for a row: the pass in its output folder and the settings its EXR header records,
compared with what the row would render now (the "outdated" mark and Re-render). Qt-free."""

from __future__ import annotations

import glob
import os
import re

from dvd_vfx.fsutil import sha256_file

# header attribute -> (row value key, how it reads in the row)
_COMPARED = (("mode", "mode"), ("invert", "invert"), ("clamp", "clamp"), ("window", "window"),
             ("overlap", "overlap"), ("upsample", "upsample"))


def find_pass(out_dir: str, shot_name: str) -> dict:
    """{"pattern", "first", "last", "count", "attributes"} of ``<out_dir>/<shot>.depth.####.exr``, or {}."""
    if not out_dir or not os.path.isdir(out_dir):
        return {}
    prefix = f"{shot_name}.depth."
    numbers = []
    width = 4
    for path in glob.glob(os.path.join(glob.escape(out_dir), glob.escape(prefix) + "*.exr")):
        match = re.fullmatch(r"(-?\d+)\.exr", os.path.basename(path)[len(prefix):])
        if match:
            numbers.append(int(match.group(1)))
            width = len(match.group(1).lstrip("-"))
    if not numbers:
        return {}
    numbers.sort()
    from dvd_vfx.passes.exr import pass_filename, read_pass_attributes

    first_file = os.path.join(out_dir, pass_filename(shot_name, numbers[0]))
    try:
        attributes = read_pass_attributes(first_file)
    except Exception:  # a damaged or foreign file: treat as a pass we cannot compare
        attributes = {}
    return {"pattern": os.path.join(out_dir, f"{shot_name}.depth.{'#' * max(4, width)}.exr"),
            "first": numbers[0], "last": numbers[-1], "count": len(numbers),
            "attributes": {k: v for k, v in attributes.items() if isinstance(v, (str, int, float, list))}}


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)), abs(float(b)))
    return a == b


def differences(on_disk: dict, values: dict, *, first_frame: int | None = None) -> list[str]:
    """What the row would render differently from the pass on disk, as "near 1 -> 2" lines ([] = same)."""
    attrs = on_disk.get("attributes") or {}
    if not attrs:
        return ["the pass on disk has no dvd/ header (written by something else)"] if on_disk else []
    out = []
    for attr, key in _COMPARED:
        if attr in attrs and key in values:
            disk, now = attrs[attr], values[key]
            if isinstance(now, bool):
                disk = bool(disk)
            if not _same(disk, now):
                out.append(f"{key} {disk} \u2192 {now}")
    predictor = attrs.get("predictor")
    if predictor and values.get("predictor") and predictor != values["predictor"] \
            and not str(predictor).startswith(values["predictor"]):
        out.append(f"predictor {predictor} \u2192 {values['predictor']}")
    anchors = values.get("anchors")
    if anchors:
        try:
            digest = sha256_file(anchors)
        except OSError:
            digest = None
        if attrs.get("anchorsSha256") != digest:
            out.append("anchors file " + ("changed" if attrs.get("anchorsSha256") else f"added ({anchors})"))
    elif attrs.get("anchorsSha256"):
        out.append("anchors removed")
    elif values.get("mode") == "depth":
        for key in ("near", "far"):
            if key in attrs and not _same(attrs[key], values[key]):
                out.append(f"{key} {attrs[key]:g} \u2192 {values[key]:g}")
    if values.get("frames"):
        want = values["frames"]
        if attrs.get("normalisedFrames") and attrs["normalisedFrames"] != want:
            out.append(f"frames {attrs['normalisedFrames']} \u2192 {want}")
    if first_frame is not None and on_disk.get("first") is not None and on_disk["first"] != first_frame \
            and not values.get("frames"):
        out.append(f"first frame {on_disk['first']} \u2192 {first_frame}")
    return out
