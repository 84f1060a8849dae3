"""`dvd-vfx farm ray`: a batch of shots as Ray tasks, on a Ray cluster or a local Ray.

By default the batch's windows go into warm tasks (plan.warm_tasks): at most one per task slot
and model setting, each one process that renders window parts of one or more shots with one
predictor (ray_tasks.run_warm, ray_worker), so the model is loaded once per slot for the whole
batch; a shot's assemble tasks (``render --assemble --write-frames X-Y``, one per frame chunk)
are submitted once all its window parts are done. With --windows-per-task K each shot gets its
own window tasks (``render --only-windows A-B``) and its assemble tasks at once, which Ray
starts when those are done (their receipts are its arguments). Through the object store, a shot
with several frame chunks also gets one stitch task before them. What a task does on its worker:
dvd_vfx/farm/ray_tasks.py; how a shot's progress is summed over its tasks: dvd_vfx/farm/ray_progress.py.

Before anything is submitted, every shot is probed and planned, the resources a task asks for
are checked against the cluster (Ray leaves a task that asks for GPUs the cluster lacks pending
forever, so that is an error here) and the storage is chosen: the shared cache when every node
sees the cache folder and the output folder at the same path, else Ray's object store
(--object-store). The submitter fires the same hooks as a local render, one job per shot
(job_started, job_progress, job_log, pass_written, job_finished, job_failed), and moves a
shot's files into the output folder only once all its frames are written: a failed shot leaves
nothing there. While tasks are pending it checks every few seconds that some live node still
fits each kind of task (after a node dies Ray would leave them pending forever) and fails the
shots that wait for one once none has fitted for NODE_LOSS_GRACE_S.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from dvd_vfx.errors import Cancelled, DvdError, InputError
from dvd_vfx.farm.ray_progress import ShotProgress
from dvd_vfx.fsutil import write_atomic

log = logging.getLogger("dvd_vfx.farm.ray")

OBJECT_STORE_CHOICES = ("auto", "always", "never")
FORWARDED_ENV = ("SOURCE_DATE_EPOCH",)  # plus every DVD_VFX_* variable of the submitter
ASSEMBLE_GPU_SHARE = 0.01  # assemble tasks run no model but must see the window tasks' device class
POLL_S = 0.2
PROBE_TIMEOUT_S = 180.0
STOP_WAIT_S = 30.0  # after a cancel: how long cancelled tasks get to clean up
FORCE_CANCEL_S = 20.0  # a cancelled task still running after this is killed (ray.cancel force=True)
NODE_CHECK_S = 5.0  # while tasks are pending: how often the live nodes are compared with the tasks' needs
NODE_LOSS_GRACE_S = 60.0  # no live node fits a pending task for this long: its shot fails
OBJECT_STORE_FRAMES_PER_TASK = 100  # default --frames-per-task through the object store (bounds a task's objects)


def add_arguments(p) -> None:
    g = p.add_argument_group("ray")
    g.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to run on, e.g. 10.0.0.1:6379 or auto (default: $RAY_ADDRESS, else a new "
                        "local Ray on this machine)")
    g.add_argument("--gpus-per-task", type=float, default=0, metavar="N",
                   help="GPUs a window task asks Ray for (default 0: CPU); checked against the cluster first")
    g.add_argument("--cpus-per-task", type=float, default=1, metavar="N", help="CPUs a task asks Ray for (default 1)")
    g.add_argument("--max-retries", type=int, default=3, metavar="N",
                   help="times a task whose render process crashed or was killed, or whose Ray worker died, is run "
                        "again (default 3; bad input or weights fail at once)")
    g.add_argument("--object-store", choices=OBJECT_STORE_CHOICES, default="auto",
                   help="move predictions and passes through Ray's object store instead of the shared cache and "
                        "output folders: auto (when a node does not see them), always, never (default auto); "
                        f"--frames-per-task then defaults to {OBJECT_STORE_FRAMES_PER_TASK}")
    g.add_argument("--scratch-dir", metavar="DIR",
                   help="object store: the folder on each worker where a task renders into its private cache "
                        "(a disk, not RAM; default: farm-scratch in the worker's dvd-vfx cache folder)")


@dataclass(frozen=True)
class FarmSettings:
    address: str | None  # None: a new local Ray
    gpus_per_task: float = 0.0
    cpus_per_task: float = 1.0
    max_retries: int = 3
    object_store: str = "auto"
    scratch_dir: str | None = None  # None: each worker's default (ray_tasks.scratch_root)

    @classmethod
    def from_args(cls, args) -> "FarmSettings":
        from dvd_vfx.farm.plan import absolute

        gpus, cpus, retries = args.gpus_per_task, args.cpus_per_task, args.max_retries
        if not (math.isfinite(gpus) and gpus >= 0):
            raise InputError(f"--gpus-per-task {gpus:g} must be 0 or more")
        if gpus > 1 and gpus != int(gpus):
            raise InputError(f"--gpus-per-task {gpus:g}: Ray takes a fraction of one GPU or whole GPUs")
        if not (math.isfinite(cpus) and cpus > 0):
            raise InputError(f"--cpus-per-task {cpus:g} must be more than 0")
        if retries < 0:
            raise InputError(f"--max-retries {retries} must be 0 or more")
        scratch = getattr(args, "scratch_dir", None)
        return cls(address=args.address or os.environ.get("RAY_ADDRESS") or None, gpus_per_task=float(gpus),
                   cpus_per_task=float(cpus), max_retries=retries, object_store=args.object_store,
                   scratch_dir=absolute(scratch) if scratch else None)


def run(args, options) -> int:
    """`dvd-vfx farm ray`: render every source; 0 when every shot's pass is written."""
    ray = import_ray()
    from dvd_vfx.cli_args import engine_for, model_settings
    from dvd_vfx.console import ProgressBars
    from dvd_vfx.farm.plan import absolute, check_unique_shots, plan_shot, task_model, task_threads

    settings = FarmSettings.from_args(args)
    model = task_model(model_settings(args), settings.gpus_per_task)
    options = task_threads(dataclasses.replace(options, out_dir=Path(absolute(options.out_dir))),
                           settings.cpus_per_task)
    if getattr(args, "batch", None):
        from dvd_vfx.farm.plan import plan_batch

        shots = plan_batch(args, lambda o: task_threads(dataclasses.replace(o, out_dir=Path(absolute(o.out_dir))),
                                                        settings.cpus_per_task),
                           windows_per_task=args.windows_per_task or 1, frames_per_task=args.frames_per_task)
        shots = [dataclasses.replace(s, source=absolute(s.source), model=_row_model(s, settings)) for s in shots]
    else:
        shots = [plan_shot(absolute(s), options, windows_per_task=args.windows_per_task or 1,
                           frames_per_task=args.frames_per_task) for s in args.sources]
    check_unique_shots(shots)
    if args.no_cache and settings.object_store == "never":
        raise InputError("--no-cache with --object-store never: the tasks would have no way to share windows; "
                         "drop one of them")
    from dvd_vfx.cache import ShotCache

    cache_root = None if args.no_cache else absolute(ShotCache(args.cache_dir).root)
    plugins_dirs = tuple(absolute(d) for d in (getattr(args, "plugins_dir", None) or ()))
    farm = RayFarm(ray, engine_for(args), shots, options, settings, model=model,
                   predictor=getattr(args, "predictor", None), plugins_dirs=plugins_dirs, cache_root=cache_root,
                   cache_max_gb=args.cache_max_gb, frames_per_task=args.frames_per_task,
                   windows_per_task=args.windows_per_task)
    bars = ProgressBars(stacked=True)
    name = farm.engine.register(bars)
    try:
        farm.run(on_start=bars.names.update)
    finally:
        bars.close()
        farm.engine.unregister(name)
    print(farm.summary())
    failed = [s for s in farm.shots if s.error is not None]
    if failed:  # each failed shot has its line in the summary; one error line names the first
        first = failed[0].error
        error = type(first)(f"{len(failed)} of {len(farm.shots)} shots failed; first: shot {failed[0].name}: {first}"
                            if len(farm.shots) > 1 else f"shot {failed[0].name}: {first}")
        error.exit_code = first.exit_code
        raise error
    return 0


def _row_model(shot, settings: FarmSettings):
    """A batch shot's own model settings (its row's preset or columns) as its tasks get them."""
    from dvd_vfx.farm.plan import shot_task_model

    return shot_task_model(shot, settings.gpus_per_task)


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("dvd-vfx farm ray needs Ray: pip install 'dvd-vfx[farm]' (or pip install ray) in this "
                         "Python and on every worker") from None
    return ray


# -- cluster checks ------------------------------------------------------------------------------


def connect(ray, address: str | None) -> str:
    """ray.init; returns how to name the cluster in messages."""
    kwargs = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address or "local", **kwargs)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, TimeoutError, ValueError...
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if address is None:
            raise InputError(f"could not start a local Ray: {detail}") from None
        raise InputError(f"cannot connect to the Ray cluster at {address}: {detail}; check --address "
                         "(`ray start --head` prints it) and that this machine reaches it") from None
    return address or "a local Ray on this machine"


def check_resources(ray, settings: FarmSettings, where: str) -> list[dict]:
    """The live nodes a task fits on; InputError when none (Ray would leave such a task pending forever)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    gpus, cpus = settings.gpus_per_task, settings.cpus_per_task
    fits = [n for n in nodes if _fits(n, cpus, gpus)]
    if fits:
        return fits
    total = ray.cluster_resources()
    shape = (f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}, {total.get('CPU', 0):g} CPUs, "
             f"{total.get('GPU', 0):g} GPUs")
    most_gpus = max((n["Resources"].get("GPU", 0) for n in nodes), default=0)
    if gpus > most_gpus:
        have = "no GPUs" if most_gpus == 0 else f"at most {most_gpus:g} on one node"
        raise InputError(f"--gpus-per-task {gpus:g} asks for {gpus:g} GPU{'s' if gpus != 1 else ''} per task but the "
                         f"Ray cluster at {where} has {have} ({shape}); start GPU workers (ray start --num-gpus N) "
                         "or lower --gpus-per-task (0 renders on CPUs)")
    most_cpus = max((n["Resources"].get("CPU", 0) for n in nodes if n["Resources"].get("GPU", 0) >= gpus), default=0)
    raise InputError(f"--cpus-per-task {cpus:g}: no node of the Ray cluster at {where} has that many CPUs"
                     f"{' next to the GPUs asked for' if gpus else ''} (at most {most_cpus:g}; {shape}); "
                     "lower --cpus-per-task")


def task_slots(nodes: list[dict], settings: FarmSettings) -> int:
    """How many window tasks the live `nodes` run at once (each node's CPUs and GPUs over a task's)."""
    total = 0
    for node in nodes:
        res = node["Resources"]
        slots = int(res.get("CPU", 0) // settings.cpus_per_task) if settings.cpus_per_task > 0 else 1 << 30
        if settings.gpus_per_task > 0:
            slots = min(slots, int(res.get("GPU", 0) // settings.gpus_per_task))
        total += slots
    return max(1, total)


def model_loads(parts) -> int:
    """Model loads of a shot: a part of a warm task counts when it was the first to predict in its
    process (part.loads); a window task of its own, when it predicted (each attempt is a new process)."""
    return sum(p.loads if p.loads is not None else max(1, p.attempts) for p in parts if p.kind == "windows"
               and int(((p.result or {}).get("result") or {}).get("predictor_calls", 0)) > 0)


def _fits(node: dict, cpus: float, gpus: float) -> bool:
    return node["Resources"].get("CPU", 0) >= cpus and node["Resources"].get("GPU", 0) >= gpus


def task_needs(settings: FarmSettings) -> dict[str, tuple[float, float]]:
    """(CPUs, GPUs) a task of each kind asks Ray for."""
    s = settings
    assemble_gpus = min(s.gpus_per_task, ASSEMBLE_GPU_SHARE) if s.gpus_per_task > 0 else 0
    return {"windows": (s.cpus_per_task, s.gpus_per_task), "stitch": (s.cpus_per_task, assemble_gpus),
            "assemble": (s.cpus_per_task, assemble_gpus)}


class NodeWatch:
    """While tasks are pending: whether some live node still fits each kind of task, every NODE_CHECK_S.

    check_resources checks at set-up, but a node can die mid-run, and Ray leaves a task that fits no
    node pending forever without a word: once none has fitted for NODE_LOSS_GRACE_S, the tasks
    waiting for one are lost.
    """

    def __init__(self, needs: dict[str, tuple[float, float]]):
        self.needs = needs  # task_needs()
        self._next_check = 0.0
        self._short_since: float | None = None  # since when some pending task fits no live node

    def lost(self, ray, pending: list, where: str, now: float | None = None) -> list:
        """pending: (key, part) of the tasks still waiting (part: its .name and .kind). The (key, error)
        of those that no live node has fitted for NODE_LOSS_GRACE_S; [] while there is time."""
        now = time.monotonic() if now is None else now
        if now < self._next_check or not pending:
            return []
        self._next_check = now + NODE_CHECK_S
        try:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
        except Exception:  # noqa: BLE001 - the GCS is busy or restarting: next time
            return []
        short = {kind for kind, (cpus, gpus) in self.needs.items() if not any(_fits(n, cpus, gpus) for n in nodes)}
        waiting = [(key, part) for key, part in pending if part.kind in short]
        if not waiting:
            self._short_since = None
            return []
        if self._short_since is None:
            self._short_since = now
            log.warning("farm ray: no live node of the Ray cluster at %s fits the pending tasks any more; waiting "
                        "%.0f s for one to join", where, NODE_LOSS_GRACE_S)
        if now - self._short_since < NODE_LOSS_GRACE_S:
            return []
        cpus = sum(n["Resources"].get("CPU", 0) for n in nodes)
        gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
        shape = f"{len(nodes)} live node{'s' if len(nodes) != 1 else ''}, {cpus:g} CPUs, {gpus:g} GPUs"
        lost = []
        for key, part in waiting:
            want_cpus, want_gpus = self.needs[part.kind]
            lost.append((key, DvdError(
                f"{part.name}: no live node of the Ray cluster at {where} has {want_cpus:g} CPU"
                f"{'s' if want_cpus != 1 else ''}{f' and {want_gpus:g} GPU' if want_gpus else ''}"
                f"{'s' if want_gpus > 1 else ''} for it any more "
                f"({shape}, for {now - self._short_since:.0f} s): a node left the cluster; restart it "
                "and render the shot again")))
        self._short_since = None
        return lost


def shared_storage(ray, nodes: list[dict], folders: list[str]) -> tuple[str, str] | None:
    """None when every node sees every folder at the same path, else (node, folder) of the first that does not.

    The submitter writes a probe file with a random token in each folder and one task per node
    (pinned to it, asking for no CPU) reads them back.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from dvd_vfx.farm.ray_tasks import probe_paths

    token = secrets.token_hex(16)
    files = {}
    try:
        for folder in folders:
            path = os.path.join(folder, f".dvd-vfx-probe-{token}")
            try:
                with open(path, "w") as fh:
                    fh.write(token)
            except OSError as exc:
                raise InputError(f"cannot write into {folder}: {exc.strerror or exc}; check the folder's "
                                 "permissions or choose another one") from None
            files[path] = token
        probe = ray.remote(probe_paths)
        refs = {probe.options(num_cpus=0, max_retries=1, scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(files): n for n in nodes}
        try:
            answers = ray.get(list(refs), timeout=PROBE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - GetTimeoutError, a node gone
            raise InputError(f"could not check the storage of the Ray nodes within {PROBE_TIMEOUT_S:.0f} s "
                             f"({type(exc).__name__}); choose --object-store always or never") from None
    finally:
        for path in files:
            try:
                os.unlink(path)
            except OSError:
                pass
    for node, (host, seen) in zip(refs.values(), answers):
        for path, ok in seen.items():
            if not ok:
                return f"{host} ({node.get('NodeManagerAddress', '?')})", os.path.dirname(path)
    return None


# -- the run -------------------------------------------------------------------------------------


@dataclass
class _Part:
    name: str  # "windows 0-1" | "stitch" | "frames 1-13"
    kind: str  # windows | stitch | assemble
    size: int  # windows or frames in the chunk
    attempts: int = 0
    finished: bool = False
    result: dict | None = None  # the task's receipt: the render's result, timings, node
    payload: list = field(default_factory=list)  # object store: ObjectRefs of the windows, stitch or EXR files
    windows: tuple[int, int] | None = None  # a window part: its first and last window
    loads: int | None = None  # a part of a warm task: model loads it caused (0 or 1); None: its own task


@dataclass
class _Warm:
    """A warm window task: window parts of one or more shots rendered by one process (one model load)."""

    name: str
    items: list  # (shot, part) per part, in the task's order
    ref: object = None  # the receipt
    result: dict | None = None  # the receipt once done: each part's outcome, timings, node
    kind: str = "windows"  # (NodeWatch: what the task asks Ray for)

    @property
    def closed(self) -> bool:
        return all(shot.closed for shot, _ in self.items)


@dataclass
class _Shot:
    index: int
    tasks: object  # dvd_vfx.farm.plan.ShotTasks
    job: object  # dvd_vfx.jobs.Job
    staging: Path
    parts: dict[str, _Part] = field(default_factory=dict)
    refs: list = field(default_factory=list)
    t0: float = 0.0
    seconds: float = 0.0
    closed: bool = False  # finished or failed: later events and results are ignored
    error: DvdError | None = None
    paths: list[Path] = field(default_factory=list)
    result: object = None  # dvd_vfx.jobs.JobResult
    progress: ShotProgress = field(default_factory=ShotProgress)
    logged: set = field(default_factory=set)
    model_loads: int = 0  # model loads of the shot's window parts (model_loads)
    common: dict = field(default_factory=dict)  # the PartSpec fields of every task of the shot
    assembling: bool = False  # its stitch/assemble tasks are submitted

    @property
    def name(self) -> str:
        return self.tasks.shot


class RayFarm:
    """One batch on one Ray cluster: plan -> check -> submit -> relay events -> commit each shot."""

    def __init__(self, ray, engine, shots, options, settings: FarmSettings, *, model, predictor=None,
                 plugins_dirs=(), cache_root: str | None = None, cache_max_gb: float | None = None,
                 frames_per_task: int | None = None, windows_per_task: int | None = None):
        self.ray, self.engine, self.options, self.settings = ray, engine, options, settings
        self.windows_per_task = windows_per_task  # None: warm tasks, the batch's windows over the task slots
        self.warm = windows_per_task is None
        self.warm_tasks: list[_Warm] = []
        self.model, self.predictor, self.plugins_dirs = model, predictor, tuple(plugins_dirs)
        self.cache_root, self.cache_max_gb = cache_root, cache_max_gb
        self.frames_per_task = frames_per_task  # None: the planned chunks (object store: bounded)
        self.planned = list(shots)
        self.shots: list[_Shot] = []
        self.pending: dict = {}  # ObjectRef -> (shot, part)
        self.where = ""
        self.storage = ""
        self.shared = False
        self.cluster = ""
        self.seconds = 0.0
        self._created: list[Path] = []
        self._relay = None
        self._relay_lost = False
        self._cancelled: dict = {}  # receipt -> when ray.cancel was asked (force-cancelled after FORCE_CANCEL_S)
        self._nodes = NodeWatch(task_needs(settings))
        self.slots = 0

    # -- set-up ----------------------------------------------------------------------------------
    def _options(self, tasks):
        """A shot's RenderOptions: its own (a batch's shot), else the command's."""
        return tasks.options if tasks.options is not None else self.options

    def _model(self, tasks):
        """A shot's model settings and predictor: its own (a batch's row), else the command's."""
        return (getattr(tasks, "model", None) or self.model,
                getattr(tasks, "predictor", None) or self.predictor)

    def _out_dirs(self) -> list[str]:
        return list(dict.fromkeys(str(self._options(t).out_dir) for t in self.planned))

    def run(self, on_start=None) -> None:
        from dvd_vfx.console import sigterm_as_interrupt
        from dvd_vfx.passes.exr import remove_created

        ray = self.ray
        t0 = time.perf_counter()
        with contextlib.ExitStack() as handlers:  # SIGTERM's handler goes back last, after ray.shutdown
            try:
                for out_dir in self._out_dirs():  # an unwritable -o fails before Ray starts
                    self._created += _make_dirs(Path(out_dir))
                self.where = connect(ray, self.settings.address)
                # after ray.init, which installs its own SIGTERM handler (it ends the driver without clean-up):
                # a farm manager's kill unwinds like Ctrl-C
                handlers.enter_context(sigterm_as_interrupt())
                nodes = check_resources(ray, self.settings, self.where)
                if self.warm:  # keep the model warm: the batch's windows in one task per slot (and model)
                    self.slots = task_slots(nodes, self.settings)
                total = ray.cluster_resources()
                alive = [n for n in ray.nodes() if n.get("Alive")]
                self.cluster = (f"{len(alive)} node{'s' if len(alive) != 1 else ''}, {total.get('CPU', 0):g} CPUs, "
                                f"{total.get('GPU', 0):g} GPUs")
                self._choose_storage(nodes)
                self._relay = ray.remote(_relay_class()).options(num_cpus=0).remote()
                self._submit_all()
                if on_start is not None:
                    on_start({s.job.id: s.name for s in self.shots})
                for shot in self.shots:
                    self._hook(shot, "dvd_vfx_job_started", job=shot.job)
                    self._report(shot, shot.progress.start())
                self._loop()
            except BaseException as exc:
                self._abandon(exc)
                raise
            finally:
                self.seconds = time.perf_counter() - t0
                remove_created(self._created)  # the empty ones: those of failed shots (or of every shot)
                ray.shutdown()

    def _choose_storage(self, nodes: list[dict]) -> None:
        mode = self.settings.object_store
        if self.cache_root is None or mode == "always":
            self.shared = False
            self.storage = "Ray's object store" + (" (--no-cache)" if self.cache_root is None else "")
            return
        from dvd_vfx.cache import ShotCache

        if not ShotCache(self.cache_root).writable():
            if mode == "never":
                raise InputError(f"--object-store never: the cache folder {self.cache_root} is not writable here")
            blind = ("this machine", self.cache_root)
        else:
            blind = shared_storage(self.ray, nodes, [self.cache_root, *self._out_dirs()])
        if blind is None:
            self.shared = True
            self.storage = f"the shared cache {self.cache_root}"
            return
        node, folder = blind
        if mode == "never":
            raise InputError(f"--object-store never: node {node} does not see {folder} (same path); mount it there "
                             "or let predictions travel through Ray's object store (--object-store auto)")
        self.shared = False
        self.storage = f"Ray's object store ({folder} is not visible from {node})"
        log.info("farm ray: %s", self.storage)

    def _submit_all(self) -> None:
        from dvd_vfx.farm.plan import chunks
        from dvd_vfx.jobs import Job, new_job_id
        from dvd_vfx.jsonvalues import jsonable

        s = self.settings
        env = {k: v for k, v in os.environ.items() if k.startswith("DVD_VFX_") or k in FORWARDED_ENV}
        run_id = secrets.token_hex(4)
        for index, tasks in enumerate(self.planned):
            options = self._options(tasks)
            if not self.shared and self.frames_per_task is None:  # bounded: a task's files wait in the store
                tasks = dataclasses.replace(tasks, frame_chunks=chunks(*tasks.frame_range,
                                                                       OBJECT_STORE_FRAMES_PER_TASK))
            model, predictor = self._model(tasks)
            job = Job(id=new_job_id(), source=tasks.source, out_dir=str(options.out_dir), shot=options.shot,
                      predictor=str(predictor or "dvd"), options=jsonable(dataclasses.asdict(options)))
            staging = Path(options.out_dir) / f".dvd-vfx-ray-{tasks.shot}-{run_id}"
            try:
                staging.mkdir()
            except OSError as exc:
                raise InputError(f"cannot create a staging folder in {options.out_dir}: {exc.strerror or exc}; "
                                 "check the folder's permissions or choose another -o") from None
            shot = _Shot(index=index, tasks=tasks, job=job, staging=staging, t0=time.perf_counter(),
                         progress=ShotProgress(tasks.n_windows))
            self.shots.append(shot)
            shot.common = dict(shot_index=index, shot=tasks.shot, source=tasks.source,
                               options=dataclasses.replace(options, out_dir=staging),
                               cache_dir=self.cache_root if self.shared else None, predictor=predictor,
                               model=model, plugins_dirs=self.plugins_dirs, env=env,
                               cache_max_gb=self.cache_max_gb, scratch_dir=s.scratch_dir)
            if self.warm:
                continue  # below: its windows go into the batch's warm tasks, its assembly once they are done
            receipts, windows = [], []
            for a, b in tasks.window_chunks:
                part = _Part(name=f"windows {a}-{b}", kind="windows", size=b - a + 1, windows=(a, b))
                self._submit_windows(shot, part)
                receipts.append(shot.refs[-1])
                windows.append(part.payload)
            # The assemble tasks wait for the window tasks' receipts (returned last: every window exists then)
            self._submit_assembly(shot, receipts, windows)
        if self.warm:
            self._submit_warm()

    def _submit(self, shot: _Shot, part: _Part, spec, gpus: float, *after, max_retries: int | None = None,
                **kwargs) -> None:
        """One task of one shot; returns: the payload objects (ray_tasks.payload_count), then the receipt."""
        from dvd_vfx.farm.ray_tasks import run_part

        refs = self._remote(run_part, spec, gpus, f"dvd-vfx {spec.shot} {part.name}", *after,
                            max_retries=max_retries, **kwargs)
        part.payload = refs[:-1]
        self._track(shot, part, refs[-1])

    def _remote(self, fn, spec, gpus: float, name: str, *after, max_retries: int | None = None, **kwargs) -> list:
        """Submit `fn(spec, relay, *after, **kwargs)` as one Ray task: its refs, the payload objects
        (ray_tasks.payload_count) then the receipt; a crash (PartCrashed) is retried."""
        from dvd_vfx.farm.ray_tasks import PartCrashed, payload_count

        s = self.settings
        n = payload_count(spec)
        refs = self.ray.remote(fn).options(
            num_cpus=s.cpus_per_task, num_gpus=gpus, max_retries=s.max_retries if max_retries is None else max_retries,
            num_returns=n + 1, retry_exceptions=[PartCrashed], name=name).remote(spec, self._relay, *after, **kwargs)
        return list(refs) if n else [refs]

    def _submit_windows(self, shot: _Shot, part: _Part, *, max_retries: int | None = None) -> None:
        from dvd_vfx.farm.ray_tasks import PartSpec

        self._submit(shot, part, PartSpec(part=part.name, windows=part.windows, **shot.common),
                     self.settings.gpus_per_task, max_retries=max_retries)

    def _submit_assembly(self, shot: _Shot, receipts: list, windows: list) -> None:
        """The shot's assemble tasks (and its stitch task through the object store). receipts: the window
        tasks they wait for; windows: per window part, its payload refs (the object store: nested in a
        list, so Ray does not fetch them all into the task before it starts: they are fetched one at a time)."""
        from dvd_vfx.farm.ray_tasks import PartSpec

        shot.assembling = True
        tasks, common = shot.tasks, shot.common
        assemble_gpus = task_needs(self.settings)["assemble"][1]
        inputs = {} if self.shared else {"windows": windows}
        if not self.shared and len(tasks.frame_chunks) > 1:  # the stitch, solved once for the shot
            first = tasks.frame_range[0]
            part = _Part(name="stitch", kind="stitch", size=0)
            self._submit(shot, part, PartSpec(part=part.name, frames=(first, first), solve_stitch=True, **common),
                         assemble_gpus, *receipts, **inputs)
            inputs["stitch"] = part.payload[0]
        for x, y in tasks.frame_chunks:
            part = _Part(name=f"frames {x}-{y}", kind="assemble", size=y - x + 1)
            self._submit(shot, part, PartSpec(part=part.name, frames=(x, y), **common), assemble_gpus, *receipts,
                         **inputs)

    def _submit_warm(self) -> None:
        """The batch's windows in warm tasks: per model (predictor and settings), at most one task per
        task slot, each rendering windows of one or more shots in one process (plan.warm_tasks)."""
        from dvd_vfx.farm.plan import warm_tasks
        from dvd_vfx.farm.ray_tasks import PartSpec, WarmSpec, payload_count, run_warm

        plan = warm_tasks([(self._model(shot.tasks), shot.tasks.n_windows) for shot in self.shots], self.slots)
        for n, items in enumerate(plan, 1):
            warm = _Warm(name=f"warm task {n}/{len(plan)}", items=[])
            specs = []
            for index, a, b in items:
                shot = self.shots[index]
                part = _Part(name=f"windows {a}-{b}", kind="windows", size=b - a + 1, windows=(a, b))
                shot.parts[part.name] = part
                shot.progress.add(part.name, part.kind, part.size)
                specs.append(PartSpec(part=part.name, windows=(a, b), **shot.common))
                warm.items.append((shot, part))
            refs = self._remote(run_warm, WarmSpec(name=warm.name, parts=specs), self.settings.gpus_per_task,
                                f"dvd-vfx {warm.name}")
            at = 0
            for (shot, part), part_spec in zip(warm.items, specs):
                k = payload_count(part_spec)
                part.payload, at = refs[at:at + k], at + k
            warm.ref = refs[-1]
            self.warm_tasks.append(warm)
            self.pending[warm.ref] = (warm, warm)

    def _windows_done(self, shot: _Shot) -> None:
        """Warm tasks: once every window part of the shot is done, its stitch/assemble tasks go in."""
        if not self.warm or shot.closed or shot.assembling:
            return
        parts = sorted((p for p in shot.parts.values() if p.kind == "windows"), key=lambda p: p.windows)
        if all(p.finished for p in parts):
            self._submit_assembly(shot, [], [p.payload for p in parts])

    def _warm_finished(self, warm: _Warm, ref) -> None:
        """A warm task's receipt: each part's outcome goes to its own shot. A part that failed fails its
        shot when a retry cannot help (bad input, weights, predictions) or no retry is left; otherwise
        it runs again as its own window task, with the retries left."""
        from dvd_vfx.errors import PERMANENT_EXIT_CODES
        from dvd_vfx.jobs import error_from_dict

        try:
            out = self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - the whole task failed: each of its shots fails
            for shot, part in warm.items:
                if not shot.closed:
                    self._fail(shot, self._task_error(shot, part, exc))
            return
        warm.result = out
        for (shot, part), item in zip(warm.items, out["items"]):
            if shot.closed:
                continue
            part.attempts = max(part.attempts, 1)
            error = item.get("error")
            if error is None:
                part.finished, part.loads = True, int(item.get("loads", 0))
                part.result = {"result": item.get("result"), "node": out.get("node")}
                self._report(shot, shot.progress.finished(part.name))
                self._windows_done(shot)
                continue
            code = error.get("exit_code") if isinstance(error.get("exit_code"), int) else 1
            left = self.settings.max_retries - 1
            if code in PERMANENT_EXIT_CODES or left < 0:
                tries = "" if code in PERMANENT_EXIT_CODES else self._after_attempts()
                self._fail(shot, error_from_dict({**error, "message": f"{part.name}: {error.get('message')}{tries}",
                                                  "exit_code": code}))
                continue
            retry = _Part(name=part.name, kind="windows", size=part.size, windows=part.windows,
                          attempts=part.attempts)
            log.info("farm ray: shot %s %s failed in %s (%s); running it again as its own task", shot.name,
                     part.name, warm.name, error.get("message"))
            self._submit_windows(shot, retry, max_retries=left)

    def _track(self, shot: _Shot, part: _Part, receipt) -> None:
        """The submitter waits on receipts (small); windows go from task to task without passing through it."""
        shot.parts[part.name] = part
        shot.progress.add(part.name, part.kind, part.size)
        shot.refs.append(receipt)
        self.pending[receipt] = (shot, part)

    # -- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        ray = self.ray
        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=POLL_S,
                                fetch_local=False)
            self._drain()
            for ref in ready:
                self._finished(ref)
            self._force_cancel_overdue()
            self._check_nodes()
            for shot in self.shots:
                if not shot.closed:
                    try:
                        cancel = self.engine.should_cancel(shot.job)
                    except DvdError as exc:
                        self._fail(shot, exc)
                        continue
                    if cancel:
                        self._fail(shot, Cancelled("render cancelled; finished windows are kept"))
            for shot in self.shots:
                if (shot.closed and (shot.refs or shot.staging is not None)
                        and not any(r in self.pending for r in shot.refs)):
                    shot.refs = []  # every task of the shot has ended
                    for part in shot.parts.values():
                        part.payload = []  # lets Ray free the shot's windows and files
                    if shot.staging is not None:  # a failed shot: what its tasks wrote goes
                        from dvd_vfx.passes.exr import discard_staging

                        discard_staging(shot.staging)
                        shot.staging = None

    def _drain(self) -> None:
        if self._relay_lost:
            return
        try:
            events = self.ray.get(self._relay.drain.remote(), timeout=60)
        except Exception as exc:  # noqa: BLE001 - the relay's node died: results still arrive
            self._relay_lost = True
            log.warning("farm ray: progress relay lost (%s); shots still finish, without progress", type(exc).__name__)
            return
        for shot_index, part_name, event in events:
            shot = self.shots[shot_index]
            part = shot.parts.get(part_name)
            if shot.closed or part is None or part.finished:
                continue
            kind = event.get("event")
            if kind == "job_started":  # a new attempt: its counters start again
                part.attempts += 1
                shot.progress.restart(part.name)
            elif kind == "progress":
                self._report(shot, shot.progress.event(part.name, str(event.get("stage")), int(event.get("done", 0)),
                                                       int(event.get("total", 0))))
            elif kind == "log":
                message = str(event.get("message", ""))
                if message not in shot.logged:  # parts repeat the same warnings (e.g. a test model)
                    shot.logged.add(message)
                    self._hook(shot, "dvd_vfx_job_log", job=shot.job, level=str(event.get("level", "warning")),
                               message=message)

    def _finished(self, ref) -> None:
        shot, part = self.pending.pop(ref)
        if isinstance(shot, _Warm):
            self._warm_finished(shot, ref)
            return
        if shot.closed:
            return
        try:
            out = self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a task's failure becomes its shot's error
            self._fail(shot, self._task_error(shot, part, exc))
            return
        part.finished, part.result = True, out
        part.attempts = max(part.attempts, 1)
        if part.kind == "windows":
            self._report(shot, shot.progress.finished(part.name))
            self._windows_done(shot)
            return
        if part.kind == "assemble" and part.payload:  # the EXR files, through the object store
            try:
                self._fetch_files(shot, part)
            except OSError as exc:
                self._fail(shot, InputError(f"cannot write into {shot.staging}: {exc.strerror or exc}"))
                return
            except Exception as exc:  # noqa: BLE001 - an object lost with its node
                self._fail(shot, self._task_error(shot, part, exc))
                return
        if part.kind == "assemble":
            frames = int((out.get("result") or {}).get("frame_count", part.size))
            self._report(shot, shot.progress.finished(part.name, frames))
        if all(p.finished for p in shot.parts.values()):
            self._complete(shot)

    def _fetch_files(self, shot: _Shot, part: _Part) -> None:
        """Write an assemble task's files into the staging folder one at a time; each object is freed once written."""
        while part.payload:
            name, data = self.ray.get(part.payload.pop(0))  # the submitter holds the only ref: dropped here
            write_atomic(shot.staging / name, data)
            del data

    def _after_attempts(self) -> str:
        """What an error that used up every retry says it took."""
        n = self.settings.max_retries + 1
        return f" (after {n} attempt{'s' if n != 1 else ''})"

    def _task_error(self, shot: _Shot, part: _Part, exc: BaseException) -> DvdError:
        from dvd_vfx.farm.ray_tasks import PartCrashed, PartFailed
        from dvd_vfx.jobs import error_from_dict

        cause = getattr(exc, "cause", None) or exc
        where = f"{part.name}"
        if isinstance(cause, PartFailed):
            tries = self._after_attempts() if isinstance(cause, PartCrashed) else ""
            return error_from_dict({"type": cause.error_type, "message": f"{where}: {cause.message}{tries}",
                                    "exit_code": cause.exit_code})
        if isinstance(cause, KeyboardInterrupt) or type(exc).__name__ == "TaskCancelledError":
            return Cancelled(f"{where}: cancelled; finished windows are kept")
        detail = (str(cause).strip().splitlines() or [""])[0]
        return DvdError(f"{where}: Ray: {type(exc).__name__}{': ' + detail if detail else ''}")

    def _complete(self, shot: _Shot) -> None:
        from dvd_vfx.jobs import JobResult, PassInfo
        from dvd_vfx.passes.exr import pass_filename

        try:
            out_dir = Path(self._options(shot.tasks).out_dir)
            shot.paths = _commit(shot.staging, out_dir)
        except InputError as exc:
            self._fail(shot, exc)
            return
        shot.staging = None
        shot.seconds = time.perf_counter() - shot.t0
        parts = list(shot.parts.values())
        first = next(p.result.get("result") or {} for p in parts if p.kind == "assemble")
        calls = sum(int((p.result.get("result") or {}).get("predictor_calls", 0)) for p in parts if p.kind == "windows")
        shot.model_loads = model_loads(parts)
        n = shot.tasks.n_windows
        shot.result = JobResult.from_dict({
            **first, "out_dir": str(out_dir), "frame_count": len(shot.paths),
            "pattern": str(out_dir / pass_filename(shot.name, 0).replace(".0000.", ".####.")),
            "predictor_calls": calls, "seconds": round(shot.seconds, 3),
            "cache": "hit" if calls == 0 else "miss" if calls >= n else "partial"})
        for path in shot.paths:  # as in a local render: a plugin failing here fails the job (the files stay)
            self._hook(shot, "dvd_vfx_pass_written", job=shot.job, pass_info=PassInfo.from_path(path, shot=shot.name))
        self._hook(shot, "dvd_vfx_job_finished", job=shot.job, result=shot.result)
        shot.closed = True

    # -- failures --------------------------------------------------------------------------------
    def _fail(self, shot: _Shot, error: DvdError) -> None:
        if shot.closed:
            return
        shot.closed, shot.error = True, error
        shot.seconds = time.perf_counter() - shot.t0
        for ref in shot.refs:
            if ref in self.pending:
                try:
                    self.ray.cancel(ref)  # its process gets SIGTERM: staged files removed, windows kept
                    self._cancelled.setdefault(ref, time.monotonic())
                except Exception:  # noqa: BLE001 - already finished
                    pass
        for warm in self.warm_tasks:  # a warm task shared with shots still running goes on
            if warm.ref in self.pending and warm.closed and warm.ref not in self._cancelled:
                try:
                    self.ray.cancel(warm.ref)
                    self._cancelled[warm.ref] = time.monotonic()
                except Exception:  # noqa: BLE001 - already finished
                    pass
        try:
            self.engine.call("dvd_vfx_job_failed", job=shot.job, error=error)
        except DvdError as exc:
            log.warning("%s", exc)

    def _abandon(self, exc: BaseException) -> None:
        """Interrupted or failing: cancel every task, give them time to clean up, remove staging folders."""
        if isinstance(exc, KeyboardInterrupt):
            error = Cancelled("interrupted; finished windows are kept")
        else:
            error = exc if isinstance(exc, DvdError) else DvdError(f"the farm run stopped: {type(exc).__name__}: {exc}")
        for shot in self.shots:
            self._fail(shot, error)
        deadline = time.monotonic() + STOP_WAIT_S
        while self.pending and time.monotonic() < deadline:
            try:
                ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=1.0)
            except Exception:  # noqa: BLE001 - the cluster is going away
                break
            for ref in ready:
                self.pending.pop(ref, None)
            self._force_cancel_overdue()
        from dvd_vfx.passes.exr import discard_staging

        for shot in self.shots:
            if shot.staging is not None:
                discard_staging(shot.staging)
                shot.staging = None

    def _force_cancel_overdue(self) -> None:
        """A cancelled task still running after FORCE_CANCEL_S is killed with its Ray worker (its render
        process then gets SIGTERM from the parent-death signal)."""
        now = time.monotonic()
        for ref, since in list(self._cancelled.items()):
            if ref not in self.pending:
                del self._cancelled[ref]
            elif since is not None and now - since > FORCE_CANCEL_S:
                self._cancelled[ref] = None  # once
                log.warning("farm ray: a cancelled task did not stop within %.0f s; killing its worker",
                            FORCE_CANCEL_S)
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - finished meanwhile
                    pass

    def _check_nodes(self, now: float | None = None) -> None:
        """Fail the shots whose pending tasks no live node has fitted for NODE_LOSS_GRACE_S (NodeWatch)."""
        waiting = [(shot, part) for shot, part in self.pending.values() if not shot.closed]
        for owner, error in self._nodes.lost(self.ray, waiting, self.where, now):
            for shot in ([s for s, _ in owner.items] if isinstance(owner, _Warm) else [owner]):
                if not shot.closed:
                    self._fail(shot, error)

    # -- hooks -----------------------------------------------------------------------------------
    def _hook(self, shot: _Shot, hook_name: str, **kwargs) -> None:
        """A hook of one shot's job; a plugin failing in it fails that shot (as in a local render)."""
        if shot.closed:
            return
        try:
            self.engine.call(hook_name, **kwargs)
        except DvdError as exc:
            self._fail(shot, exc)

    def _report(self, shot: _Shot, progress: tuple[str, int, int] | None) -> None:
        """The shot's progress from its ShotProgress (None: it did not move) through dvd_vfx_job_progress."""
        if progress is not None:
            stage, done, total = progress
            self._hook(shot, "dvd_vfx_job_progress", job=shot.job, stage=stage, done=done, total=total)

    # -- report ----------------------------------------------------------------------------------
    def summary(self) -> str:
        lines = []
        tasks = retried = 0
        for shot in self.shots:
            n = len(shot.parts)
            again = sum(max(0, p.attempts - 1) for p in shot.parts.values())
            tasks, retried = tasks + n, retried + again
            head = f"  {shot.name:<16}"
            if shot.error is None and shot.result is not None:
                r = shot.result
                lines.append(f"{head} {r.first_frame}-{r.last_frame} ({r.frame_count} frames, {r.windows} windows)  "
                             f"{n} tasks{f', {again} retried' if again else ''}  "
                             f"{shot.model_loads} model load{'s' if shot.model_loads != 1 else ''}  {shot.seconds:.1f} s  "
                             f"cache {r.cache}  {r.pattern}")
            else:
                lines.append(f"{head} FAILED after {shot.seconds:.1f} s: {shot.error}")
        ok = sum(1 for s in self.shots if s.error is None and s.result is not None)
        lines.append(f"farm ray: {ok} of {len(self.shots)} shots in {self.seconds:.1f} s; {tasks} tasks"
                     f"{f' ({retried} retried)' if retried else ''} on {self.where} ({self.cluster}); predictions "
                     f"through {self.storage}")
        lines.append(self.loads_line())
        return "\n".join(lines)

    def loads_line(self) -> str:
        """The batch's model loads: with warm tasks, one per task that predicted (at most the task slots
        per distinct predictor and model settings), whatever the number of shots and windows."""
        loads = sum(model_loads(s.parts.values()) for s in self.shots)
        models = len({repr(self._model(s.tasks)) for s in self.shots})
        line = f"model loads: {loads} for {len(self.shots)} shot{'s' if len(self.shots) != 1 else ''}"
        if self.warm:
            line += (f" (warm tasks: {len(self.warm_tasks)} over {self.slots} task slot{'s' if self.slots != 1 else ''}"
                     f", {models} model setting{'s' if models != 1 else ''})")
        else:
            line += " (--windows-per-task: one load per window task)"
        return line


def _relay_class():
    from dvd_vfx.farm.ray_tasks import Relay

    return Relay


# -- files ---------------------------------------------------------------------------------------


def _make_dirs(path: Path) -> list[Path]:
    """Create `path` and missing parents and check it takes files; the folders made, outermost first."""
    from dvd_vfx.passes.exr import make_out_dir, remove_created

    created = make_out_dir(path)
    probe = path / f".dvd-vfx-probe-{secrets.token_hex(8)}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        remove_created(created)
        raise InputError(f"cannot write into the output folder {path}: {exc.strerror or exc}; check its "
                         "permissions or choose another -o") from None
    return created


def _commit(staging: Path, out_dir: Path) -> list[Path]:
    """Move a shot's files from its staging folder into `out_dir` (frame order); undone on failure."""
    from dvd_vfx.passes.exr import kept_note, publish_staged

    try:
        moved = publish_staged(staging, out_dir, sorted(p.name for p in staging.glob("*.exr")))
    except OSError as exc:
        raise InputError(f"cannot write {exc.filename}: {exc.strerror or exc}; check the output folder"
                         f"{kept_note(exc, out_dir)}") from None
    shutil.rmtree(staging, ignore_errors=True)
    return moved
