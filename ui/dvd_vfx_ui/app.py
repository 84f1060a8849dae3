"""`dvd-vfx-panel`: the standalone batch panel.

    dvd-vfx-panel                         # empty queue
    dvd-vfx-panel shots/ plate.mov        # add footage (folders are searched for sequences)
    dvd-vfx-panel batch.json --start      # load a saved queue and render it

Without paths the last queue reopens (Settings > "Reopen the last queue at launch").
"""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dvd-vfx-panel", description="Batch-render depth passes for a list of shots.")
    p.add_argument("paths", nargs="*", help="movies, sequences (shot.####.exr), folders, or one queue .json")
    p.add_argument("--start", action="store_true", help="start rendering right away")
    p.add_argument("--settings", metavar="FILE", help="settings file (default: the user config dir)")
    p.add_argument("--empty", action="store_true", help="start with an empty queue (do not reopen the last one)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="dvd-vfx-panel: %(levelname)s: %(message)s")
    try:
        from PyQt6.QtWidgets import QApplication
    except ImportError:
        print("dvd-vfx-panel: error: PyQt6 is not installed; pip install 'dvd-vfx[ui]'", file=sys.stderr)
        return 2
    from dvd_vfx.errors import DvdError

    from .controller import BatchController
    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("dvd-vfx-panel")
    controller = BatchController(settings_path=args.settings)
    window = MainWindow(controller)
    window.set_font_scale(controller.settings.font_scale or auto_font_scale(app))
    try:
        queues = [p for p in args.paths if p.endswith(".json")]
        for path in queues:
            controller.load_queue(path)
        sources = [p for p in args.paths if not p.endswith(".json")]
        if sources:
            window.add_paths(sources)
        last = last_queue(controller.settings) if not args.paths and not args.empty else None
        if last:
            window.load_queue(last)
        if args.start:
            controller.wait_probed()
            controller.start()
    except DvdError as exc:
        window.show_error(str(exc))
    window.show()
    code = app.exec()
    controller.shutdown()
    return code


def auto_font_scale(app) -> float:
    """Text size for the screen: larger on big screens that the OS does not scale (2560x1440 at 1x)."""
    screen = app.primaryScreen()
    if screen is None:
        return 1.0
    width = screen.availableGeometry().width()  # logical pixels: OS scaling already counted
    return 1.35 if width >= 2400 else 1.15 if width >= 1800 else 1.0


def last_queue(settings) -> str | None:
    """The queue to reopen at launch: the newest recent queue that still exists, if the setting is on."""
    import os

    if not settings.reopen_last_queue:
        return None
    return next((p for p in settings.recent_queues if os.path.isfile(p)), None)


if __name__ == "__main__":
    sys.exit(main())
