"""Regenerate the panel screenshots of the README (docs/screenshots/panel-<W>x<H>.png).

    python docs/screenshots/make_screenshots.py [--out docs/screenshots] [--sizes 1280x720,1920x1080,2560x1440]

Runs the real panel offscreen (QT_QPA_PLATFORM=offscreen) on a small batch made here with ffmpeg: two
movies that render, one damaged movie that fails before Start, and one shot re-tuned after rendering
(outdated). The depth comes from a stand-in predictor plugin written to a temporary folder (no model
weights needed); everything else is the production panel and engine. Text size per window size is
what the panel picks on such a screen without OS scaling (View > Larger text changes it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("DVD_VFX_PANEL_NO_DIALOGS", "1")

HERE = Path(__file__).resolve().parent
FONT_SCALES = {1280: 1.0, 1920: 1.15, 2560: 1.35}

# depth stand-in: far at the top of the frame, near at the bottom, brighter = a little nearer
PLUGIN = textwrap.dedent('''
    import numpy as np

    from dvd_vfx.hookspecs import hookimpl
    from dvd_vfx.plugins import PredictorFactory


    class Ramp:
        name = "ramp"

        def identity(self):
            return {"predictor": "ramp", "model_id": "ramp-1", "weights_sha256": "0" * 64}

        def predict(self, frames):
            t, h, w, _ = frames.shape
            rows = np.linspace(0.15, 0.85, h, dtype=np.float32)[None, :, None]
            return (0.75 * rows + 0.25 * frames.mean(axis=-1)).astype(np.float32)


    @hookimpl
    def dvd_vfx_register_predictors():
        return [PredictorFactory("ramp", lambda settings: Ramp(), "screenshot stand-in: vertical ramp")]
''')


def movie(path: Path, source: str, frames: int) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-frames:v", str(frames),
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def wait(app, condition, timeout=60.0, debug=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the panel did not get there in time: {debug()}")
        app.processEvents()
        time.sleep(0.02)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE), help="folder for the PNGs (default: docs/screenshots)")
    p.add_argument("--sizes", default="1280x720,1920x1080,2560x1440")
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    from PyQt6.QtWidgets import QApplication

    from dvd_vfx_ui.controller import BatchController
    from dvd_vfx_ui.main_window import MainWindow
    from dvd_vfx_ui.settings import Settings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dvd-vfx-shots-") as tmp:
        root = Path(tmp)
        (root / "plugins").mkdir()
        (root / "plugins" / "ramp.py").write_text(PLUGIN)
        plates = root / "plates"
        plates.mkdir()
        shots = [movie(plates / "sh010_plate.mov", "testsrc2=size=640x360:rate=24", 17),
                 movie(plates / "sh020_plate.mov", "smptehdbars=size=640x360:rate=24", 9),
                 movie(plates / "sh040_plate.mov", "mandelbrot=size=640x360:rate=24", 9)]
        damaged = plates / "sh030_plate.mov"
        damaged.write_bytes(bytes(range(256)) * 16)  # not a movie: fails when it is added
        shots.insert(2, damaged)
        for width, height in sizes:
            settings = Settings(cache_dir=str(root / "cache"), plugins_dir=str(root / "plugins"))
            renders = root / f"renders-{width}"  # each size renders its own batch (from the cache)
            controller = BatchController(settings=settings, settings_path=root / f"panel-{width}.json")
            controller.set_batch_defaults(output_pattern=str(renders / "{shot}"), predictor="ramp",
                                          resolution=96, window=9, overlap=4, start_frame=1001, near=1.0, far=60.0)
            window = MainWindow(controller)
            window.resize(width, height)
            window.set_font_scale(FONT_SCALES.get(width, 1.0))
            window.show()
            window.add_paths([str(s) for s in shots])
            controller.wait_probed(60)
            wait(app, lambda: all(s["info"] or s["status"] == "failed" for s in controller.shots()))
            controller.start()
            wait(app, lambda: controller.state == "idle" and controller.wait(0))
            ids = [s["id"] for s in controller.shots()]
            controller.set_overrides([ids[3]], near=0.5, far=30.0)  # re-tuned after rendering: outdated
            window.select_shot(ids[0])
            wait(app, lambda: (window.preview.shown or ("",))[0] == ids[0])
            window.preview.slider.setValue(1008)
            wait(app, lambda: window.preview.shown == (ids[0], 1008) and window.preview.depth_view.has_image(),
                 debug=lambda: (window.preview.shown, window.preview.depth_view.note,
                                [(s["status"], s["error"], s["info"] and s["info"]["first_frame"])
                                 for s in controller.shots()]))
            for _ in range(20):
                app.processEvents()
                time.sleep(0.02)
            path = out / f"panel-{width}x{height}.png"
            window.grab().save(str(path), "PNG", 0)  # smallest file
            print(f"{path} ({path.stat().st_size // 1024} KB)")
            controller.shutdown()
            window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
