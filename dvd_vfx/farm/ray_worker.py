"""The render process of a warm window task of `dvd-vfx farm ray` (dvd_vfx/farm/ray_tasks.py, run_warm).

``python -m dvd_vfx.farm.ray_worker ITEMS`` renders the window parts listed in the ITEMS file one
after the other in this one process, each as ``dvd-vfx render --only-windows A-B --json-progress``
would (the same Engine, hooks and JSON-lines events; the job id of item i is ``item-i``), with
ONE predictor per (predictor, model settings): the model is loaded once for every shot of the
task, not once per shot or window. A part that fails (bad input, a predictor error) ends with its
``job_failed`` event and the next part still runs: one bad shot fails alone. A cancel (SIGTERM)
ends the process (exit 130); finished windows stay cached.

ITEMS is a pickle written by the task (the same dvd-vfx on both sides): a dict with
``plugins_dirs`` and ``items``, each item a dict with ``source``, ``options`` (RenderOptions),
``cache_dir``, ``cache_max_gb``, ``windows`` (first, last), ``predictor`` and ``model`` (ModelSettings).
"""

from __future__ import annotations

import logging
import pickle
import sys

from dvd_vfx.hookspecs import hookimpl


def item_job_id(index: int) -> str:
    return f"item-{index}"


def predictor_key(item: dict) -> str:
    """Parts with the same key share one predictor (one model load) in the process."""
    return repr((item.get("predictor") or "dvd", item.get("model")))


def run(spec: dict) -> int:
    from dvd_vfx.cache import ShotCache
    from dvd_vfx.console import sigterm_as_interrupt, warn_if_test_model
    from dvd_vfx.engine import Engine
    from dvd_vfx.jobs import JsonLinesEmitter

    engine = Engine(plugins_dirs=spec.get("plugins_dirs") or ())
    engine.register(JsonLinesEmitter(sys.stdout))
    failed = _Failed()
    engine.register(failed)
    predictors: dict[str, object] = {}
    with sigterm_as_interrupt():
        for index, item in enumerate(spec["items"]):
            try:
                key = predictor_key(item)
                if key not in predictors:  # built inside the first part's job: a failure is that part's
                    predictors[key] = engine.make_predictor(item.get("predictor") or "dvd", item.get("model"))
                cache = ShotCache(item["cache_dir"], max_gb=item.get("cache_max_gb"))
                engine.render(item["source"], item["options"], predictors[key], model=item.get("model"),
                              job_id=item_job_id(index), on_predictor=warn_if_test_model, cache=cache,
                              only_windows=tuple(item["windows"]))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - reported as the part's job_failed; the next part runs
                if item_job_id(index) not in failed.jobs:
                    _fail_unstarted(engine, item, index, exc)
    return 0


class _Failed:
    """The jobs whose failure was reported (Engine.render reports its own; a predictor that could not
    be built or footage no plugin reads fail before its job starts)."""

    def __init__(self):
        self.jobs: set[str] = set()

    @hookimpl
    def dvd_vfx_job_failed(self, job, error):
        self.jobs.add(job.id)


def _fail_unstarted(engine, item: dict, index: int, exc: Exception) -> None:
    """A part that failed before its render began (the predictor could not be built, ...): its job's
    job_started and job_failed events, so the submitter names the shot and the error."""
    import dataclasses
    import os

    from dvd_vfx.errors import DvdError
    from dvd_vfx.jobs import Job
    from dvd_vfx.jsonvalues import jsonable

    options = item["options"]
    job = Job(id=item_job_id(index), source=str(item["source"]), out_dir=os.fspath(options.out_dir), shot=options.shot,
              predictor=str(item.get("predictor") or "dvd"), options=jsonable(dataclasses.asdict(options)))
    error = exc if isinstance(exc, DvdError) else DvdError(f"unexpected {type(exc).__name__}: {exc}".splitlines()[0])
    try:
        engine.call("dvd_vfx_job_started", job=job)
        engine.call("dvd_vfx_job_failed", job=job, error=error)
    except DvdError:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="dvd-vfx: %(message)s")
    for name in ("diffusers", "torch", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with open(argv[0], "rb") as fh:
        spec = pickle.load(fh)
    try:
        return run(spec)
    except KeyboardInterrupt:
        print("dvd-vfx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
