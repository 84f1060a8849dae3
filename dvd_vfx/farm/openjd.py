"""`dvd-vfx farm openjd`: shots as an Open Job Description job template (specification 2023-09).

Per shot, two steps:
  "<shot> windows"   one task per window chunk: `render SOURCE ... --only-windows A-B`
  "<shot> assemble"  depends on it; one task per frame chunk: `render SOURCE ... --assemble
                     [--write-frames X-Y]`
Every task is an ordinary `python -m dvd_vfx.cli render` with identical render flags, so all of
a shot's tasks address the same cache entry: the cache folder (job parameter CacheDir) is the
shared state and must be reachable from every worker (a shared file system), like OutputDir.

`openjd check job.yaml` validates the file; `openjd run job.yaml` runs every step locally in
dependency order; Deadline Cloud takes it as the template.yaml of a job bundle
(`deadline bundle submit BUNDLE_DIR`). Paths are job parameters of type PATH, so a farm's path
mapping rules apply to the plates, the output, the cache and the weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from pathlib import Path

from dvd_vfx.errors import InputError
from dvd_vfx.fsutil import write_atomic

SPEC = "jobtemplate-2023-09"
MAX_JOB_PARAMETERS = 50  # the 2023-09 specification's limits
MAX_TASK_VALUES = 1024  # values of one task parameter
_FIXED_PARAMETERS = ("DvdVfxPython", "OutputDir", "CacheDir", "Weights")


# Windows one OpenJD task predicts by default: its model load (seconds to a minute) is shared by 8
# windows (about 2 s each on a GPU) instead of paid per window
OPENJD_WINDOWS_PER_TASK = 8

def add_arguments(p) -> None:
    g = p.add_argument_group("open job description")
    g.add_argument("-o", "--template", required=True, metavar="JOB.yaml",
                   help="where to write the job template (.yaml or .json)")
    g.add_argument("--job-name", help="name of the job (default: dvd-vfx depth: SHOTS)")
    g.add_argument("--engine-python", metavar="PYTHON",
                   help="the Python with dvd-vfx and torch on the workers (default: this one; "
                        "a job parameter, so it can be changed at submission)")
    g.add_argument("--gpus-per-task", type=int, default=0, metavar="N",
                   help="host requirement amount.worker.gpu of the window tasks; tasks then run --device cuda "
                        "(default 0: CPU workers, --device cpu)")
    g.add_argument("--cpus-per-task", type=int, default=1, metavar="N",
                   help="host requirement amount.worker.vcpu of every task, and the --threads each predicts with "
                        "unless --threads is given (default 1): one count for all tasks keeps their windows "
                        "consistent, and a single render with the same --threads reproduces the pass")


def run(args, options) -> int:
    from dvd_vfx.cli_args import model_settings
    from dvd_vfx.farm.plan import absolute, check_unique_shots, plan_shot, task_model, task_threads

    if getattr(args, "no_cache", False):
        raise InputError("farm tasks share windows through the cache; drop --no-cache and give a --cache-dir "
                         "every worker can reach")
    if args.cpus_per_task < 1:
        raise InputError(f"--cpus-per-task {args.cpus_per_task} must be at least 1")
    options = task_threads(options, args.cpus_per_task)
    if getattr(args, "batch", None):
        from dvd_vfx.farm.plan import plan_batch

        shots = plan_batch(args, lambda o: task_threads(o, args.cpus_per_task),
                           windows_per_task=args.windows_per_task or OPENJD_WINDOWS_PER_TASK,
                           frames_per_task=args.frames_per_task)
    else:
        shots = [plan_shot(source, options, windows_per_task=args.windows_per_task or OPENJD_WINDOWS_PER_TASK,
                           frames_per_task=args.frames_per_task) for source in args.sources]
    check_unique_shots(shots)
    model = task_model(model_settings(args), args.gpus_per_task)
    template_path = Path(args.template).expanduser()
    template, values = build_template(
        shots, options, cache_dir=_cache_dir(args), model=model, predictor=getattr(args, "predictor", None),
        plugins_dirs=[absolute(d) for d in getattr(args, "plugins_dir", None) or ()],
        python=args.engine_python or sys.executable, template_dir=template_path.parent, job_name=args.job_name,
        gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task, cache_max_gb=args.cache_max_gb,
        source_date_epoch=os.environ.get("SOURCE_DATE_EPOCH"))
    validate(template)
    values_path = template_path.with_name(template_path.stem + ".params" + (template_path.suffix or ".yaml"))
    path = write_document(template, template_path)
    values_path = write_document(values, values_path)
    n_windows = sum(len(s.window_chunks) for s in shots)
    n_assemble = sum(len(s.frame_chunks) for s in shots)
    print(f"wrote {path}: {len(shots)} shot{'s' if len(shots) != 1 else ''}, {2 * len(shots)} steps, "
          f"{n_windows} window tasks + {n_assemble} assemble tasks\n"
          f"wrote {values_path}: this submission's job parameter values (absolute paths)\n"
          f"  check:  openjd check {path}\n"
          f"  run:    openjd run {path} -p file://{values_path}\n"
          f"  farm:   Deadline Cloud: the template is a job bundle's template.yaml; give the values as "
          f"--parameter NAME=VALUE")
    return 0


def _cache_dir(args) -> str:
    from dvd_vfx.cache import ShotCache

    return str(Path(args.cache_dir).resolve()) if args.cache_dir else str(ShotCache(None).root.resolve())


def _step_name(shot: str, what: str, index: int) -> str:
    name = f"{shot} {what}"
    if len(name) > 64:  # the specification's limit; the shot's number keeps truncated names apart
        tag = f"..#{index} {what}"
        name = shot[:64 - len(tag)] + tag
    return name


_PLACEHOLDER = re.compile(r"\{\{(?:Param|Task\.Param)\.[A-Za-z_][A-Za-z0-9_]*\}\}")


def _check_literals(template: dict) -> None:
    """Open Job Description reads {{ ... }} as an expression and has no escape for it: refuse a
    path, name or value that contains one, naming it (rather than a template that fails later)."""
    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from walk(v)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v)
        elif isinstance(value, str):
            yield value

    for text in walk(template):
        rest = _PLACEHOLDER.sub("", text)
        if "{{" in rest or "}}" in rest:
            raise InputError(f"{text!r} contains '{{{{' or '}}}}', which Open Job Description reads as an expression "
                             "(it has no escape); rename the file, folder or value")


def build_template(shots, options, *, cache_dir: str, model, predictor=None, plugins_dirs=(), python: str,
                   template_dir: Path, job_name: str | None = None, gpus_per_task: int = 0, cpus_per_task: int = 1,
                   cache_max_gb: float | None = None, source_date_epoch: str | None = None) -> tuple[dict, dict]:
    """The job template as a dict (ready for YAML/JSON), and the job parameter values of this submission.

    The specification joins a PATH parameter's default to the template's folder and refuses
    defaults that walk up out of it, so only paths inside `template_dir` get a default; every
    path is in the returned values (absolute), which `openjd run -p file://...` takes.
    """
    from dvd_vfx.farm.plan import shot_task_model, task_argv

    for shot in shots:
        for what, count, flag in (("window", len(shot.window_chunks), "--windows-per-task"),
                                  ("assemble", len(shot.frame_chunks), "--frames-per-task")):
            if count > MAX_TASK_VALUES:
                raise InputError(f"shot {shot.shot} would have {count} {what} tasks; one step holds at most "
                                 f"{MAX_TASK_VALUES}: raise {flag}")
    if len(shots) + sum(1 for s in shots if s.options is not None) + len(_FIXED_PARAMETERS) > MAX_JOB_PARAMETERS:
        raise InputError(f"{len(shots)} shots do not fit one Open Job Description job (at most "
                         f"{MAX_JOB_PARAMETERS - len(_FIXED_PARAMETERS)} shot parameters); write several jobs")
    base_dir = os.path.abspath(template_dir)
    values: dict[str, str] = {"DvdVfxPython": str(python)}
    params: list[dict] = [{"name": "DvdVfxPython", "type": "STRING", "default": str(python),
                           "description": "Python interpreter with dvd-vfx and torch installed, on the workers"}]

    def path_param(name: str, path, description: str, **extra) -> None:
        absolute = os.path.abspath(path)
        entry = {"name": name, "type": "PATH", **extra}
        try:
            relative = os.path.relpath(absolute, base_dir)
        except ValueError:  # another drive (Windows): no default, the values file has it
            relative = ".."
        if relative != ".." and not relative.startswith(".." + os.sep):
            entry["default"] = relative
        params.append({**entry, "description": description})
        values[name] = absolute

    if any(shot.options is None for shot in shots):
        path_param("OutputDir", options.out_dir, "where SHOT.depth.####.exr are written",
                   objectType="DIRECTORY", dataFlow="OUT")
    path_param("CacheDir", cache_dir, "dvd-vfx shot cache shared by every task (a shared file system)",
               objectType="DIRECTORY", dataFlow="INOUT")
    if model.weights:
        path_param("Weights", model.weights, "DVD weights folder", objectType="DIRECTORY", dataFlow="IN")
        model = dataclasses.replace(model, weights="{{Param.Weights}}")
    weights = values.get("Weights")
    task_options = dataclasses.replace(options, out_dir=Path("{{Param.OutputDir}}"))
    steps = []
    for index, shot in enumerate(shots, 1):
        param = f"Shot{index}"
        path_param(param, shot.source,
                   f"plate of shot {shot.shot} (frames {shot.frame_range[0]}-{shot.frame_range[1]})")
        shot_options, shot_model, shot_predictor = task_options, model, predictor
        if shot.model is not None:  # a batch's row: its preset's or columns' model settings, as `dvd-vfx batch`
            shot_model, shot_predictor = shot_task_model(shot, gpus_per_task), shot.predictor or predictor
            if shot_model.weights and os.path.abspath(shot_model.weights) == weights:
                shot_model = dataclasses.replace(shot_model, weights="{{Param.Weights}}")
            elif shot_model.weights:
                path_param(f"{param}Weights", shot_model.weights, f"DVD weights folder of shot {shot.shot}",
                           objectType="DIRECTORY", dataFlow="IN")
                shot_model = dataclasses.replace(shot_model, weights="{{Param.%sWeights}}" % param)
        if shot.options is not None:  # a batch's shot: its own output folder, frames and settings
            path_param(f"{param}Output", shot.options.out_dir, f"where {shot.shot}.depth.####.exr are written",
                       objectType="DIRECTORY", dataFlow="OUT")
            shot_options = dataclasses.replace(shot.options, out_dir=Path("{{Param.%sOutput}}" % param))
        base = task_argv("{{Param.%s}}" % param, shot_options, cache_dir="{{Param.CacheDir}}",
                         predictor=shot_predictor, model=shot_model, plugins_dirs=plugins_dirs,
                         cache_max_gb=cache_max_gb)
        windows = _step_name(shot.shot, "windows", index)
        window_step = {
            "name": windows,
            "parameterSpace": {"taskParameterDefinitions": [
                {"name": "Windows", "type": "STRING", "range": [f"{a}-{b}" for a, b in shot.window_chunks]}]},
            "script": _script([*base, "--only-windows", "{{Task.Param.Windows}}"]),
        }
        assemble_step = {"name": _step_name(shot.shot, "assemble", index), "dependencies": [{"dependsOn": windows}]}
        vcpus = {"name": "amount.worker.vcpu", "min": cpus_per_task}
        window_step["hostRequirements"] = {"amounts": [vcpus]}
        assemble_step["hostRequirements"] = {"amounts": [vcpus]}
        if gpus_per_task:
            window_step["hostRequirements"]["amounts"].append({"name": "amount.worker.gpu", "min": gpus_per_task})
            # the cache key holds the device class: assembling needs a CUDA worker too (it runs no model)
            assemble_step["hostRequirements"]["amounts"].append({"name": "amount.worker.gpu", "min": 1})
        if len(shot.frame_chunks) > 1:
            assemble_step["parameterSpace"] = {"taskParameterDefinitions": [
                {"name": "Frames", "type": "STRING", "range": [f"{a}-{b}" for a, b in shot.frame_chunks]}]}
            assemble_step["script"] = _script([*base, "--assemble", "--write-frames", "{{Task.Param.Frames}}"])
        else:
            assemble_step["script"] = _script([*base, "--assemble"])
        steps += [window_step, assemble_step]
    names = ", ".join(s.shot for s in shots)
    name = job_name or f"dvd-vfx depth: {names if len(names) <= 100 else names[:97] + '...'}"
    template = {"specificationVersion": SPEC, "name": name,
                "description": "Depth passes by dvd-vfx: window tasks fill the shared cache, assemble tasks write EXRs.",
                "parameterDefinitions": params, "steps": steps}
    if source_date_epoch:  # the submitter pinned the EXR capDate: every task writes the same header
        template["jobEnvironments"] = [{"name": "dvd-vfx", "variables": {"SOURCE_DATE_EPOCH": source_date_epoch}}]
    _check_literals(template)
    return template, values


def _script(argv: list[str]) -> dict:
    return {"actions": {"onRun": {
        "command": "{{Param.DvdVfxPython}}", "args": ["-m", "dvd_vfx.cli", *argv],
        # SIGTERM first: dvd-vfx removes staged files and keeps finished windows, then the farm may kill
        "cancelation": {"mode": "NOTIFY_THEN_TERMINATE"},
    }}}


def validate(template: dict) -> None:
    """Parse the template with openjd-model (what `openjd check` does), when it is installed."""
    try:
        from openjd.model import DecodeValidationError, decode_job_template
    except ImportError:
        return
    try:
        decode_job_template(template=template)
    except DecodeValidationError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"the job template is not valid Open Job Description: {' '.join(first[:3])}") from None


def write_document(template: dict, path: Path) -> Path:
    """YAML (or JSON for a .json name), written to a temp file then renamed."""
    path = path.expanduser()
    if path.exists() and path.is_dir():
        raise InputError(f"-o {path} is a folder; give a file name such as {path / 'job.yaml'}")
    if not path.parent.is_dir():
        raise InputError(f"-o {path}: folder {path.parent} does not exist; create it first")
    if path.suffix.lower() == ".json":
        text = json.dumps(template, indent=2) + "\n"
    else:
        try:
            import yaml
        except ImportError:  # JSON is YAML too
            text = json.dumps(template, indent=2) + "\n"
        else:
            text = yaml.safe_dump(template, sort_keys=False, width=120, allow_unicode=True)
    return write_atomic(path, text).resolve()
