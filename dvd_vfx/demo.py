"""`dvd-vfx demo`: generate a small sample shot and render its depth pass, offline.

With real weights installed it uses them (preview-like settings, so a CPU finishes); without,
it says plainly that it uses a tiny random test model whose depth is meaningless.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from dvd_vfx.errors import InputError, WeightsError

log = logging.getLogger("dvd_vfx.demo")


def sample_shot(folder: Path, *, frames: int = 24, size: str = "320x180") -> Path:
    """A moving test pattern encoded as H.264 by ffmpeg (bundled or system binary)."""
    from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg as ffmpeg_binary

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dvd_demo_plate.mp4"
    if path.is_file():
        return path
    tmp = folder / "dvd_demo_plate.tmp.mp4"
    cmd = [ffmpeg_binary(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24",
           "-frames:v", str(frames), "-pix_fmt", "yuv420p", str(tmp)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise InputError(f"could not generate the demo plate with {cmd[0]}: "
                         f"{(getattr(exc, 'stderr', '') or str(exc)).strip().splitlines()[-1:]}") from None
    tmp.replace(path)
    return path


def run(args) -> int:
    """`dvd-vfx demo`: args has the model flags and --output."""
    import platformdirs

    from dvd_vfx.cli_args import make_predictor
    from dvd_vfx.console import run_render
    from dvd_vfx.render import RenderOptions

    work = Path(platformdirs.user_cache_dir("dvd-vfx", appauthor=False)) / "demo"
    plate = sample_shot(work)
    tiny = False
    try:
        predictor = make_predictor(args)
    except WeightsError as exc:
        from dvd_vfx.model.tiny import write_tiny_weights

        tiny = True
        folder = work / "tiny-test-model"
        if not (folder / "Wan2.1_VAE.pth").is_file():
            write_tiny_weights(folder)
        log.warning("no DVD weights found (%s)", exc)
        log.warning("USING A TINY RANDOM TEST MODEL: the depth in this demo is MEANINGLESS; it only shows the "
                    "pipeline working. Get the real model with `dvd-vfx weights fetch` (CC BY-NC 4.0).")
        args.weights = str(folder)
        predictor = make_predictor(args)
    options = RenderOptions(out_dir=Path(args.output), shot="dvd_demo", resolution=128 if tiny else 320,
                            window=9 if tiny else 33, overlap=4 if tiny else 8, mode="depth", near=1.0, far=50.0,
                            preview=True, replace=True)  # the demo's folder is its own: an older demo pass is replaced
    print(f"demo plate: {plate}")
    from dvd_vfx.cache import ShotCache

    return run_render(plate, options, predictor, ShotCache(), args=args)  # it warns about a test model itself
