"""What a command shows on the terminal while it renders, and how it is stopped.

ProgressBars      tqdm bars on stderr per stage of each job, fed by the job-progress hook
sigterm_as_interrupt  SIGTERM unwinds like Ctrl-C (KeyboardInterrupt) inside the block
run_render        one render through the Engine with bars (or JSON job events) and a summary
warn_if_test_model    the warning that the weights are a tiny test model
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from pathlib import Path

from dvd_vfx.hookspecs import hookimpl

log = logging.getLogger("dvd_vfx.console")


class ProgressBars:
    """tqdm bars on stderr: windows while predicting, frames while stitching and writing.

    Register it on the Engine (dvd_vfx_job_progress feeds it, like any host's plugin), or call
    update() for a stage outside a render. One job at a time (the default): each stage gets its own
    bar. stacked: several jobs at once, one bar each (stacked on a terminal) whose stage changes
    in place. A bar is named names[job id], else `label`, else the job id.
    """

    LABELS = {"predict": "predict (windows)", "stitch": "stitch (frames)", "write": "write (frames)"}

    def __init__(self, label: str | None = None, *, stacked: bool = False):
        self.label = label
        self.stacked = stacked
        self.names: dict = {}  # job id -> shot name (stacked)
        self._bars: dict = {}  # job id (None when not stacked) -> [stage, tqdm bar]

    @hookimpl
    def dvd_vfx_job_progress(self, job, stage, done, total):
        self.update(stage, done, total, job=job.id)

    def update(self, stage: str, done: int, total: int, *, job: str | None = None) -> None:
        from tqdm import tqdm

        key = job if self.stacked else None
        desc = f"{self.names.get(job) or self.label or job}: {self.LABELS.get(stage, stage)}"
        entry = self._bars.get(key)
        if entry is not None and entry[0] != stage:
            if self.stacked:  # the job's line moves on to the next stage
                entry[0] = stage
                entry[1].reset(total=total)
                entry[1].set_description_str(desc)
            else:  # the finished stage's bar stays on screen
                entry[1].close()
                entry = None
        if entry is None:  # stacked bars on a terminal; elsewhere (a log file) plain interleaved updates
            position = len(self._bars) if self.stacked and sys.stderr.isatty() else None
            entry = self._bars[key] = [stage, tqdm(total=total, desc=desc, unit="", position=position,
                                                   dynamic_ncols=True, leave=True, file=sys.stderr)]
        entry[1].n = done
        entry[1].refresh()

    def close(self) -> None:
        for _, bar in self._bars.values():
            bar.close()
        self._bars.clear()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block, SIGTERM (a host's cancel, a farm manager's kill) raises KeyboardInterrupt,
    so it unwinds like Ctrl-C: staged files are removed, finished windows stay cached. The previous
    handler is put back on the way out. Outside the main thread this does nothing."""
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def warn_if_test_model(predictor) -> None:
    """Warn when the DVD predictor's weights are a tiny/custom test model (meaningless depth)."""
    files = getattr(predictor, "_files", None)
    if files is not None and files.dit is not None:
        from dvd_vfx.model import checkpoint as ck

        layout = ck.dit_layout(ck.read_safetensors_header(files.dit), files.dit)
        if not ck.is_full_size(ck.infer_dit_config(layout, files.dit)):
            log.warning("the weights in %s are a tiny/custom test model, not DVD 1.3B: the depth will be "
                        "meaningless; run `dvd-vfx weights fetch` for the real model", files.folder)


def run_render(source, options, predictor, cache=None, *, args=None, model=None) -> int:
    """Render through the command's Engine so plugins see the job; 0 when the pass is written.

    predictor: a registered name or an object. args: the parsed command (--json-progress writes
    job events on stdout instead of bars; --job-id; the split flags), or None.
    """
    from dvd_vfx.cli_args import engine_for, split_options

    engine = engine_for(args)
    json_mode = bool(getattr(args, "json_progress", False))
    bars = None
    with sigterm_as_interrupt():
        if json_mode:  # stdout carries only events
            from dvd_vfx.jobs import JsonLinesEmitter

            plugin = JsonLinesEmitter(sys.stdout)
        else:
            plugin = bars = ProgressBars(options.shot or Path(str(source)).name)
        name = engine.register(plugin)
        try:
            result = engine.render(source, options, predictor, model=model, job_id=getattr(args, "job_id", None),
                                   on_predictor=warn_if_test_model, cache=cache, **split_options(args))
        finally:
            engine.unregister(name)
            if bars is not None:
                bars.close()
    with contextlib.redirect_stdout(sys.stderr) if json_mode else contextlib.nullcontext():
        print_summary(result)
    return 0


_CACHE_WORDS = {"off": "off", "miss": "miss (all windows predicted)", "partial": "partial hit (resumed)",
                "hit": "hit (no predictor call)"}


def print_summary(result) -> None:
    """A render's summary (dvd_vfx.render.RenderResult) on stdout."""
    if not result.pattern:  # --only-windows: a part of a split render
        print(f"\n  shot        {result.shot}\n  windows     {result.predictor_calls} predicted into the cache "
              f"({result.cache_key[:12] if result.cache_key else '-'}) of {result.windows} in the shot\n"
              f"  time        {result.seconds:.1f} s\n  next        --assemble writes the pass once every window "
              "is cached")
        return
    lo, hi = result.percentiles
    depth = f"depth {result.near:g}..{result.far:g}" if result.mode == "depth" else "disparity 0..1 (near = 1)"
    print(f"""
  shot        {result.shot}
  frames      {result.frame_numbers[0]}-{result.frame_numbers[1]} ({result.frame_count} frames, {result.windows} windows)
  time        {result.seconds:.1f} s ({result.fps:.2f} fps)
  size        plate {result.plate_size[0]}x{result.plate_size[1]}, working {result.working_size[0]}x{result.working_size[1]}
  values      {depth}; shot percentiles p2 {lo:.4f}, p98 {hi:.4f} (raw disparity) of frames {result.frame_numbers[0]}-{result.frame_numbers[1]}
  cache       {_CACHE_WORDS[result.cache]}{f" ({result.cache_key[:12]})" if result.cache_key else ""}
  output      {result.pattern}""")
    fit = getattr(result, "anchors", None)
    if fit:
        print(f"  anchors     {fit['used']} used, {fit['rejected']} rejected; error at the anchors: median "
              f"{100 * fit['medianRelError']:.2f} %, worst {100 * fit['worstRelError']:.2f} % "
              f"(1/depth = {fit['scale']:.6g} d + {fit['shift']:.6g}; {fit['file']})")
