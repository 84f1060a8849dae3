"""`dvd-vfx anchors from-camera`: a camera solve's 3D points through its per-frame camera, checked
against a known projection (tests/test_anchors.py's ray-cast scene), the conventions (Nuke's ZXY
rotation order, -Z view axis, pixel origin), the point formats matchmove packages export, and a
render anchored by the result.

The scene in test_anchors looks along +z with +x right and +y up (a left-handed world); written as a
right-handed solve (what .chan and matrices hold) its points and cameras are mirrored in z:
(x, y, z) -> (x, y, -z), and the camera then looks down -Z with no rotation."""

import json
import math
import struct

import numpy as np
import pytest

from dvd_vfx import anchors as anchors_mod
from dvd_vfx import anchors_camera as ac
from dvd_vfx.cli import main
from test_anchors import FIRST, FOCAL, FRAMES, H, W, camera, depth_of, project, render, scene, scores  # noqa: F401

FILM_W = 36.0
FOCAL_MM = FOCAL * FILM_W / W  # 70 px on a 96 px wide plate
VFOV = math.degrees(2 * math.atan(H / 2 / FOCAL))


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([*map(str, argv)])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def surface_points(n: int, seed: int) -> np.ndarray:
    """3D points on the floor, the wall and the sphere (the visible surface under random pixels)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = int(rng.integers(FRAMES))
        px, py = rng.uniform(0, W), rng.uniform(0, H)
        z = depth_of(t)[int(py), int(px)]
        out.append(camera(t) + z * np.array([(int(px) + 0.5 - W / 2) / FOCAL, -(int(py) + 0.5 - H / 2) / FOCAL, 1.0]))
    return np.array(out)


def mirror(p):
    return np.asarray(p, dtype=np.float64) * np.array([1.0, 1.0, -1.0])


def write_chan(path, vfov=True, rotations=None, first=FIRST, frames=FRAMES):
    vfov = VFOV if vfov is True else vfov
    lines = []
    for t in range(frames):
        c = mirror(camera(t)).tolist()
        r = rotations[t] if rotations is not None else (0.0, 0.0, 0.0)
        lines.append(f"{first + t} {c[0]!r} {c[1]!r} {c[2]!r} {r[0]} {r[1]} {r[2]}" + (f" {vfov!r}" if vfov else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_json_camera(path, flat=False, intrinsics=None):
    frames = []
    for t in range(FRAMES):
        m = np.eye(4)
        m[:3, 3] = mirror(camera(t))
        frames.append({"frame": FIRST + t, "matrix": m.ravel().tolist() if flat else m.tolist()})
    path.write_text(json.dumps({"width": W, "height": H, "intrinsics": intrinsics or {"focal_px": FOCAL},
                                "frames": frames}))
    return path


def expected_rows(points, frames=None):
    """The scene's own projection (test_anchors.project) of every point, in front and inside."""
    rows = []
    for t in range(FRAMES):
        if frames is not None and FIRST + t not in frames:
            continue
        for p in points:
            x, y, d = project(p, t)
            if d > 0 and 0 <= x < W and 0 <= y < H:
                rows.append((FIRST + t, x, y, d))
    return np.array(rows)


def read_rows(path):
    return np.array([(a.frame, a.x, a.y, a.depth) for a in anchors_mod.read_anchors(path)])


def assert_same(got, want):
    assert got.shape == want.shape, (got.shape, want.shape)
    order_g = np.lexsort((got[:, 2], got[:, 1], got[:, 0]))
    order_w = np.lexsort((want[:, 2], want[:, 1], want[:, 0]))
    g, w = got[order_g], want[order_w]
    assert np.array_equal(g[:, 0], w[:, 0])
    np.testing.assert_allclose(g[:, 1:3], w[:, 1:3], atol=1e-3, rtol=0)
    np.testing.assert_allclose(g[:, 3], w[:, 3], rtol=1e-6)


@pytest.fixture(scope="module")
def points():
    return surface_points(60, seed=11)


@pytest.mark.parametrize("camera_kind", ["chan_vfov", "chan_nuke_vfov", "chan_focal", "json", "json_flat_mm"])
def test_projection_matches_the_scene(tmp_path, capsys, points, camera_kind):
    pts = tmp_path / "points.csv"
    pts.write_text("x,y,z\n" + "".join(f"{p[0]!r},{p[1]!r},{p[2]!r}\n" for p in mirror(points).tolist()))
    extra = []
    if camera_kind == "chan_vfov":
        cam = write_chan(tmp_path / "cam.chan")
        extra = ["--width", W, "--height", H]
    elif camera_kind == "chan_nuke_vfov":  # Nuke writes the vfov of its vertical aperture (not the plate's)
        cam = write_chan(tmp_path / "cam.chan", vfov=math.degrees(2 * math.atan(30.0 / (2 * FOCAL_MM))))
        extra = ["--width", W, "--height", H, "--film-back", f"{FILM_W}x30"]
    elif camera_kind == "chan_focal":  # no vfov column: focal and film back in mm
        cam = write_chan(tmp_path / "cam.chan", vfov=False)
        extra = ["--width", W, "--height", H, "--focal", FOCAL_MM, "--film-back", f"{FILM_W}x24"]
    elif camera_kind == "json":
        cam = write_json_camera(tmp_path / "cam.json")
    else:
        cam = write_json_camera(tmp_path / "cam.json", flat=True,
                                intrinsics={"focal_mm": FOCAL_MM, "film_back_mm": [FILM_W, 24.0]})
    out = tmp_path / "anchors.csv"
    code, stdout, err = run_cli(capsys, "anchors", "from-camera", "--points", pts, "--camera", cam, "-o", out, *extra)
    assert code == 0, err
    want = expected_rows(points)
    assert len(want) > 500  # most points are seen on most frames
    assert out.read_text().splitlines()[0] == "frame,x,y,depth"
    assert_same(read_rows(out), want)
    assert f"wrote {len(want)} anchors on {FRAMES} frames from 60 points" in stdout


def test_point_formats_read_the_same_points(tmp_path, points):
    p = mirror(points[:7])
    pl = p.tolist()
    (tmp_path / "named.csv").write_text("name,x,y,z\n" + "".join(f"pt{i},{a!r},{b!r},{c!r}\n"
                                                                 for i, (a, b, c) in enumerate(pl)))
    # 3DEqualizer / SynthEyes style: "name x y z", whitespace, no header
    (tmp_path / "named.txt").write_text("".join(f"pt{i} {a!r} {b!r} {c!r}\n" for i, (a, b, c) in enumerate(pl)))
    (tmp_path / "bare.csv").write_text("".join(f"{a!r},{b!r},{c!r}\n" for a, b, c in pl))
    (tmp_path / "pts.obj").write_text("# points\no cloud\n" + "".join(f"v {a!r} {b!r} {c!r}\n" for a, b, c in pl)
                                      + "vn 0 1 0\nf 1 2 3\n")
    header = ("ply\nformat {fmt} 1.0\ncomment from a solve\nelement vertex 7\nproperty double x\nproperty double y\n"
              "property double z\nproperty uchar red\nelement face 1\nproperty list uchar int vertex_indices\n"
              "end_header\n")
    (tmp_path / "ascii.ply").write_text(header.format(fmt="ascii") + "".join(f"{a!r} {b!r} {c!r} 255\n"
                                                                             for a, b, c in pl) + "3 0 1 2\n")
    body = b"".join(struct.pack("<dddB", a, b, c, 7) for a, b, c in pl) + struct.pack("<Biii", 3, 0, 1, 2)
    (tmp_path / "binary.ply").write_bytes(header.format(fmt="binary_little_endian").encode() + body)
    f32 = header.replace("double", "float").format(fmt="binary_little_endian").encode()
    (tmp_path / "float.ply").write_bytes(f32 + b"".join(struct.pack("<fffB", a, b, c, 7) for a, b, c in pl))
    for name in ("named.csv", "named.txt", "bare.csv", "pts.obj", "ascii.ply", "binary.ply"):
        np.testing.assert_array_equal(ac.read_points(tmp_path / name), p, err_msg=name)
    np.testing.assert_allclose(ac.read_points(tmp_path / "float.ply"), p, rtol=1e-6)


def test_nuke_rotation_order_and_axes(tmp_path):
    """ZXY (Nuke's default): roll about the lens axis first, then tilt, then pan. ry=+90 turns the
    camera from -Z to -X; rx=+30 tilts it up; rz=+45 rolls it, so a point to the camera's horizontal
    right appears rotated 45 degrees clockwise (right and down) in the image."""
    c = np.array([2.0, 1.0, 3.0])
    look = np.array([-math.cos(math.radians(30)), math.sin(math.radians(30)), 0.0])
    right = np.array([0.0, 0.0, -1.0])  # horizontal, to the right when looking along -X
    up = np.cross(right, look)
    points = np.array([c + 10 * look, c + 10 * look + right])
    (tmp_path / "p.csv").write_text("".join(f"{a!r},{b!r},{d!r}\n" for a, b, d in points.tolist()))
    (tmp_path / "cam.chan").write_text(f"1 {c[0]} {c[1]} {c[2]} 30 90 45 40\n")
    rows = np.array(ac.project_points(ac.read_points(tmp_path / "p.csv"),
                                      ac.read_camera(tmp_path / "cam.chan", (200, 100))).rows)
    f = 50 / math.tan(math.radians(20))
    np.testing.assert_allclose(rows[0], [1, 100, 50, 10], atol=1e-9)
    s = math.sqrt(0.5) * f / 10
    np.testing.assert_allclose(rows[1], [1, 100 + s, 50 + s, 10], atol=1e-9)
    # the same camera as a camera-to-world matrix built from its axes (right, up, back) in JSON
    rolled_right = math.cos(math.radians(45)) * right + math.sin(math.radians(45)) * up
    rolled_up = np.cross(-look, rolled_right)
    m = np.eye(4)
    m[:3, :3] = np.stack([rolled_right, rolled_up, -look], axis=1)
    m[:3, 3] = c
    np.testing.assert_allclose(ac.euler_matrix(30, 90, 45), m[:3, :3], atol=1e-12)
    (tmp_path / "cam.json").write_text(json.dumps({"width": 200, "height": 100, "frames": [
        {"frame": 1, "matrix": m.tolist(), "fx": f}]}))
    via_json = ac.project_points(ac.read_points(tmp_path / "p.csv"), ac.read_camera(tmp_path / "cam.json", None)).rows
    np.testing.assert_allclose(via_json, rows, atol=1e-9)
    squeezed = ac.read_camera(tmp_path / "cam.chan", (200, 100), pixel_aspect=2.0).intrinsics[0]
    assert squeezed.fy == pytest.approx(f) and squeezed.fx == pytest.approx(f / 2)  # 2x anamorphic, stored squeezed
    # another rotation order moves the view axis: XYZ applies the roll last
    xyz = ac.project_points(ac.read_points(tmp_path / "p.csv"),
                            ac.read_camera(tmp_path / "cam.chan", (200, 100), rotation_order="XYZ")).rows
    assert len(xyz) == 0 or not np.allclose(xyz[0, 1:3], [100, 50], atol=1)


def test_per_frame_every_frames_and_offset(tmp_path, capsys, points):
    pts = tmp_path / "p.csv"
    pts.write_text("".join(f"{a!r},{b!r},{c!r}\n" for a, b, c in mirror(points).tolist()))
    cam = write_chan(tmp_path / "cam.chan")
    args = ["anchors", "from-camera", "--points", pts, "--camera", cam, "--width", W, "--height", H]
    code, _, err = run_cli(capsys, *args, "-o", tmp_path / "a.csv", "--per-frame", 6, "--every", 4,
                           "--frames", "1003-1020")
    assert code == 0, err
    rows = read_rows(tmp_path / "a.csv")
    assert sorted(set(rows[:, 0].astype(int))) == [1003, 1007, 1011, 1015, 1019]
    assert all((rows[:, 0] == f).sum() == 6 for f in (1003, 1007, 1011, 1015, 1019))
    full = expected_rows(points, frames={1003})
    picked = rows[rows[:, 0] == 1003]
    assert_same(picked, full[np.isin(np.round(full[:, 1], 6), np.round(picked[:, 1], 6))])  # a subset, exact
    # spread over the image: a pick in every quadrant where points are visible, none at the very edge
    for right in (False, True):
        for low in (False, True):
            here = lambda r: ((r[:, 1] >= W / 2) == right) & ((r[:, 2] >= H / 2) == low)  # noqa: E731
            assert here(picked).any() or not here(full).any()
    assert np.ptp(picked[:, 1]) > 0.4 * W and np.ptp(picked[:, 2]) > 0.3 * H
    code, _, err = run_cli(capsys, *args, "-o", tmp_path / "b.csv", "--per-frame", 6, "--every", 4,
                           "--frames", "1003-1020")
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "a.csv").read_bytes()  # deterministic
    code, _, err = run_cli(capsys, *args, "-o", tmp_path / "c.csv", "--frame-offset", -1000, "--frames", "1-2")
    assert code == 0, err
    assert sorted(set(read_rows(tmp_path / "c.csv")[:, 0].astype(int))) == [1, 2]


def test_the_plate_gives_size_and_frames(scene, tmp_path, capsys, points):
    plate, _ = scene
    pts = tmp_path / "p.csv"
    pts.write_text("".join(f"{a!r},{b!r},{c!r}\n" for a, b, c in mirror(points).tolist()))
    # a solve with 5 frames of handles on each side: only the plate's frames become anchors
    handles = write_chan(tmp_path / "handles.chan", first=FIRST - 5, frames=FRAMES + 10)
    code, _, err = run_cli(capsys, "anchors", "from-camera", "--points", pts, "--camera", handles, "--plate", plate,
                           "-o", tmp_path / "a.csv")
    assert code == 0, err
    assert sorted(set(read_rows(tmp_path / "a.csv")[:, 0].astype(int))) == list(range(FIRST, FIRST + FRAMES))
    # a solve numbered from 1 for a plate from 1001: refused, with the offset to use
    ones = write_chan(tmp_path / "ones.chan", first=1)
    code, _, err = run_cli(capsys, "anchors", "from-camera", "--points", pts, "--camera", ones, "--plate", plate,
                           "-o", tmp_path / "b.csv")
    assert code == 2 and "are none of the plate's 1001-1024; set --frame-offset (e.g. 1000)" in err
    assert not (tmp_path / "b.csv").exists()


def test_anchors_from_camera_give_scene_scale_depth(scene, tmp_path, capsys):
    """The issue's accuracy test: a render anchored by `anchors from-camera` output is within 1.5x of
    the best single affine fit (+0.005). Projected through every frame, some points are hidden behind
    the sphere on some frames: wrong anchors the fit must leave out."""
    plate, truth = scene
    pts = tmp_path / "points.obj"
    pts.write_text("".join(f"v {a!r} {b!r} {c!r}\n" for a, b, c in mirror(surface_points(40, seed=5)).tolist()))
    out = tmp_path / "anchors.csv"
    code, _, err = run_cli(capsys, "anchors", "from-camera", "--points", pts, "--camera", write_chan(tmp_path / "c.chan"),
                           "--width", W, "--height", H, "--per-frame", 8, "--every", 3, "-o", out)
    assert code == 0, err
    result = render(plate, tmp_path / "out", out)
    absrel, oracle = scores(result, truth)
    assert absrel <= 1.5 * oracle + 0.005, (absrel, oracle)
    assert result.anchors["used"] >= 0.8 * len(read_rows(out))


def test_errors_name_the_file_and_line_and_write_nothing(tmp_path, capsys, points):
    pts = tmp_path / "p.csv"
    pts.write_text("".join(f"{a!r},{b!r},{c!r}\n" for a, b, c in mirror(points).tolist()))
    cam = write_chan(tmp_path / "cam.chan")
    out = tmp_path / "a.csv"
    base = ["anchors", "from-camera", "-o", out, "--width", W, "--height", H]

    def fails(*argv, match):
        code, _, err = run_cli(capsys, *base, *argv)
        assert code == 2 and "Traceback" not in err, err
        assert match in err, err
        assert not out.exists() and not list(tmp_path.glob(".a.csv*"))

    (tmp_path / "p.fbx").write_text("x")
    fails("--points", tmp_path / "p.fbx", "--camera", cam, match="p.fbx: unknown point format '.fbx'")
    (tmp_path / "bad.csv").write_text("1,2,3\n4,five,6\n")
    fails("--points", tmp_path / "bad.csv", "--camera", cam, match="bad.csv line 2: expected x,y,z numbers")
    (tmp_path / "bad.obj").write_text("v 1 2 3\nv 1 2\n")
    fails("--points", tmp_path / "bad.obj", "--camera", cam, match="bad.obj line 2: a vertex needs 'v x y z'")
    (tmp_path / "cut.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
                                       b"property float y\nproperty float z\nend_header\n" + b"\0" * 20)
    fails("--points", tmp_path / "cut.ply", "--camera", cam, match="cut.ply: the PLY is truncated")
    lines = (tmp_path / "cam.chan").read_text().splitlines()
    (tmp_path / "bad.chan").write_text("\n".join(lines[:2] + ["1003 0 1 2 0 0"] + lines[3:]) + "\n")
    fails("--points", pts, "--camera", tmp_path / "bad.chan", match="bad.chan line 3: expected 'frame tx ty tz rx ry rz")
    fails("--points", pts, "--camera", write_chan(tmp_path / "novfov.chan", vfov=False),
          match="novfov.chan line 1: no vfov column; pass --focal MM and --film-back")
    fails("--points", pts, "--camera", cam, "--focal", 35, match="--focal needs --film-back")
    fails("--points", pts, "--camera", cam, "--frames", "1020-1030", match="frames 1025-1030 of --frames 1020-1030 "
                                                                          "are not in the camera (it has 1001-1024)")
    behind = tmp_path / "behind.csv"
    behind.write_text("".join(f"{a!r},{b!r},{-c!r}\n" for a, b, c in mirror(points).tolist()))  # all behind the camera
    fails("--points", behind, "--camera", cam, match="none of its 60 points lies in front of the camera")
    (tmp_path / "cam.json").write_text(json.dumps({"width": W, "height": H, "intrinsics": {"focal_px": 70},
                                                   "frames": [{"frame": 1, "matrix": np.eye(4)[[0, 1, 3, 2]].tolist()}]}))
    fails("--points", pts, "--camera", tmp_path / "cam.json", match="bottom row must be 0 0 0 1")
    (tmp_path / "cam.json").write_text(json.dumps({"frames": [{"frame": 1, "matrix": np.eye(4).tolist()}]}))
    fails("--points", pts, "--camera", tmp_path / "cam.json", match="frames[0]: no intrinsics")
    fails("--points", pts, "--camera", cam, "--film-back", "wide", match="--film-back 'wide'")
    code, _, err = run_cli(capsys, "anchors", "from-camera", "--points", pts, "--camera", cam, "-o", out)
    assert code == 2 and "needs the plate size" in err


def test_frames_missing_from_the_camera_are_all_counted():
    """More than six gaps: the error lists six runs and counts the rest, instead of dropping them silently."""
    from dvd_vfx.anchors_camera import Camera, select_frames
    from dvd_vfx.errors import InputError

    numbers = np.arange(1001, 1030, 2)  # every other frame: 1002, 1004, ... are missing
    camera = Camera("cam.chan", numbers, np.repeat(np.eye(3)[None], numbers.size, 0), np.zeros((numbers.size, 3)),
                    [None] * numbers.size, (64, 48))
    with pytest.raises(InputError, match=r"frames 1002, 1004, 1006, 1008, 1010, 1012, \.\.\. \(8 more frames\) of "
                                         r"--frames 1001-1029 are not in the camera"):
        select_frames(camera, (1001, 1029))
