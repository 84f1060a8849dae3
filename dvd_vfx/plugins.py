"""Plugin loading: one pluggy PluginManager per Plugins object (an Engine is one), never a global one.

Load order (later ones win where a hook picks one answer):
  1. DEFAULT_PLUGINS: the built-in predictor, footage kinds, EXR writer and shipped presets,
     each implemented ``trylast`` so any third-party plugin overrides them;
  2. entry points of the group ``dvd_vfx`` (installed packages);
  3. every ``*.py`` in ``--plugins-dir`` folders and in ``$DVD_VFX_PLUGINS_DIR``
     (os.pathsep-separated), in name order;
  4. objects passed to ``Plugins(plugins=...)`` or ``Plugins.register``.
A plugin that fails to import or register is skipped with a warning naming its path.
``DVD_VFX_TRACE_HOOKS=1`` prints every hook call on stderr. ``call_hook`` names the plugin
that raised. What plugins return (PredictorFactory, ReaderInfo, WriterInfo, ModelSettings) is
defined here. Importing this module does not import torch or numpy, nor the job protocol.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from dvd_vfx import hookspecs
from dvd_vfx.errors import DvdError, InputError, PluginError

log = logging.getLogger("dvd_vfx.plugins")

DEFAULT_PLUGINS = (
    "dvd_vfx.default_plugins.predictors",
    "dvd_vfx.default_plugins.footage",
    "dvd_vfx.default_plugins.writers",
    "dvd_vfx.default_plugins.presets",
)
ENTRY_POINT_GROUP = "dvd_vfx"
PLUGINS_DIR_ENV = "DVD_VFX_PLUGINS_DIR"
TRACE_ENV = "DVD_VFX_TRACE_HOOKS"


# -- What registration hooks return -----------------------------------------------------------


@dataclass(frozen=True)
class ModelSettings:
    """How to build a predictor; a factory uses what applies to it and ignores the rest."""

    weights: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    vae_tiling: bool | None = None
    offload: bool = False
    attention: str = "auto"  # auto | flash | cudnn | math: the scaled-dot-product kernel (DVD)
    fp32_decoder_head: bool = False  # DVD: the VAE decoder's last layer in float32 (no bf16 output steps)
    vae_tiling_auto: bool = False  # DVD: tiling decided at render start from free GPU memory (recorded on/off)
    vae_channels_last: bool = False  # DVD: the VAE's causal convolutions in channels_last_3d (recorded)
    cudnn_benchmark: bool = False  # DVD: torch.backends.cudnn.benchmark while predicting (CUDA; recorded)
    compile: bool = False  # DVD: torch.compile of the DiT blocks and VAE chunks (recorded: kernels round differently)


# The ModelSettings fields that are plain on/off switches, off by default, each the flag --NAME-WITH-DASHES
# (dvd_vfx.cli_args parses and writes them, the DVD factory passes them on), in their flags' order.
MODEL_SWITCHES = ("fp32_decoder_head", "vae_tiling_auto", "vae_channels_last", "cudnn_benchmark", "compile")


@dataclass(frozen=True)
class PredictorFactory:
    """A named way to build a predictor: ``create(settings: ModelSettings) -> predictor``.

    The predictor has ``name``, ``identity() -> dict`` (cache keys, EXR headers) and
    ``predict(frames float32 [T,H,W,3] in [0,1]) -> float32 [T,H,W]`` (disparity-like,
    larger = nearer, any affine). T = 4n+1, H and W multiples of 16.
    """

    name: str
    create: Callable[[ModelSettings], object]
    description: str = ""


@dataclass(frozen=True)
class ReaderInfo:
    """A footage kind the engine reads, for listings and a host's file filters."""

    name: str
    extensions: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class WriterInfo:
    """A pass the engine writes, for listings and hosts."""

    name: str
    pattern: str  # e.g. "{shot}.depth.####.exr"
    channels: tuple[str, ...] = ()
    description: str = ""


@dataclass
class PluginSource:
    """Where a loaded plugin came from (for `dvd-vfx plugins`)."""

    name: str
    kind: str  # default | entry point | plugins dir | registered
    location: str
    hooks: list[str] = field(default_factory=list)


# -- Hook calls that name the plugin that failed ------------------------------------------------


def _impl_codes(pm: pluggy.PluginManager) -> dict:
    codes = {}
    for hook_name in dir(pm.hook):
        caller = getattr(pm.hook, hook_name)
        if hook_name.startswith("dvd_vfx_") and hasattr(caller, "get_hookimpls"):
            for impl in caller.get_hookimpls():
                codes[getattr(impl.function, "__code__", None)] = (impl.plugin_name, hook_name)
    return codes


def _plugin_files(pm: pluggy.PluginManager) -> dict[str, str]:
    files = {}
    for name, plugin in pm.list_name_plugin():
        module = plugin if hasattr(plugin, "__file__") else sys.modules.get(type(plugin).__module__)
        path = getattr(module, "__file__", None)
        if path:
            files[os.path.realpath(path)] = name
    return files


def blame(pm: pluggy.PluginManager, exc: BaseException) -> tuple[str, str | None] | None:
    """(plugin name, hook name or None) of the innermost plugin code in `exc`'s traceback."""
    codes = _impl_codes(pm)
    files = None
    found = None
    tb = exc.__traceback__
    while tb is not None:  # outermost -> innermost; keep the innermost match
        code = tb.tb_frame.f_code
        if code in codes:
            found = codes[code]
        else:
            files = files if files is not None else _plugin_files(pm)
            name = files.get(os.path.realpath(code.co_filename))
            if name is not None and not name.startswith("dvd_vfx.default_plugins"):
                found = (name, found[1] if found else None)
        tb = tb.tb_next
    return found


def plugin_error(pm: pluggy.PluginManager, exc: Exception, where: str) -> PluginError | None:
    culprit = blame(pm, exc)
    if culprit is None:
        return None
    name, hook_name = culprit
    detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return PluginError(f"plugin {name} failed in {hook_name or where}: {detail}")


def call_hook(pm: pluggy.PluginManager, hook_name: str, **kwargs):
    """Call a hook; an unexpected exception from a plugin becomes a PluginError naming it."""
    try:
        return getattr(pm.hook, hook_name)(**kwargs)
    except DvdError:
        raise
    except Exception as exc:
        error = plugin_error(pm, exc, hook_name) or PluginError(
            f"a plugin failed in {hook_name}: {type(exc).__name__}: {exc}".splitlines()[0])
        log.debug("plugin failure in %s", hook_name, exc_info=True)
        raise error from exc


def _short(value) -> str:
    job_id = getattr(value, "id", None) if type(value).__name__ == "Job" else None
    if job_id is not None:  # a dvd_vfx.jobs.Job (not imported here: jobs depends on this module)
        return f"<job {job_id}>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _trace_hooks(pm: pluggy.PluginManager, stream=None) -> None:
    def after(outcome, hook_name, hook_impls, kwargs):
        out = stream or sys.stderr
        args = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
        plugins = ", ".join(i.plugin_name for i in hook_impls)
        exc = outcome.exception
        tail = f"raised {type(exc).__name__}: {exc}" if exc is not None else f"-> {_short(outcome.get_result())}"
        print(f"dvd-vfx: hook {hook_name}({args}) {tail} [{plugins}]", file=out, flush=True)

    pm.add_hookcall_monitoring(lambda *a: None, after)


# -- The plugin manager ---------------------------------------------------------------------------------


def _entry_points(group: str) -> list:
    """The entry points of `group`; also on Python 3.9 (Nuke 14), whose entry_points() takes no group=."""
    try:
        return list(importlib.metadata.entry_points(group=group))
    except TypeError:  # Python 3.9: a dict of group -> entry points
        return list(importlib.metadata.entry_points().get(group, ()))


class Plugins:
    """One PluginManager and what its plugins provide: predictors, readers, writers, presets, hook calls.

    dvd_vfx.engine.Engine adds the jobs (renders with hooks firing) on top.
    """

    def __init__(self, *, plugins_dirs: Iterable[str | os.PathLike] = (), entry_points: bool = True,
                 plugins: Iterable[object] = (), env: bool = True, trace: bool | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.sources: dict[str, PluginSource] = {}
        for module_name in DEFAULT_PLUGINS:
            self.register(importlib.import_module(module_name), name=module_name, kind="default",
                          location=module_name)
        if entry_points:
            self._load_entry_points()
        dirs = [Path(d) for d in plugins_dirs]
        if env and os.environ.get(PLUGINS_DIR_ENV):
            dirs += [Path(d) for d in os.environ[PLUGINS_DIR_ENV].split(os.pathsep) if d]
        seen: set[Path] = set()
        for folder in dirs:
            self._load_dir(folder, seen)
        for plugin in plugins:
            self.register(plugin)
        if trace if trace is not None else os.environ.get(TRACE_ENV, "") not in ("", "0"):
            _trace_hooks(self.pm)

    # -- loading -------------------------------------------------------------------------------
    def register(self, plugin, name: str | None = None, *, kind: str = "registered",
                 location: str = "") -> str | None:
        """Register a plugin (module or object); None (with a warning) if it does not validate."""
        if name is None:  # a readable name for messages: the module, or module.Class of an object
            base = getattr(plugin, "__name__", None) if hasattr(plugin, "__file__") else None
            base = base or f"{type(plugin).__module__}.{type(plugin).__name__}"
            name, n = base, 1
            while self.pm.has_plugin(name) or self.pm.is_blocked(name):
                n += 1
                name = f"{base}#{n}"
        try:
            name = self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            log.warning("plugin %s not loaded: %s", location or name or plugin, exc)
            return None
        if name is None:  # blocked
            return None
        for attr in dir(plugin):
            if attr.startswith("dvd_vfx_") and callable(getattr(plugin, attr, None)):
                if not hasattr(self.pm.hook, attr) or not hasattr(getattr(self.pm.hook, attr), "spec") \
                        or getattr(self.pm.hook, attr).spec is None:
                    log.warning("plugin %s: %s is not a dvd-vfx hook (typo?); see docs/hooks.md",
                                location or name, attr)
                elif not any(impl.plugin is plugin for impl in getattr(self.pm.hook, attr).get_hookimpls()):
                    log.warning("plugin %s: %s is not marked @hookimpl; it is ignored", location or name, attr)
        hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        self.sources[name] = PluginSource(name=name, kind=kind, location=location or _location(plugin), hooks=hooks)
        return name

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.sources.pop(name, None)

    def _load_entry_points(self) -> None:
        for ep in _entry_points(ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)  # Python 3.10+
            where = f"{ep.value} (entry point {ep.name!r}" + (f" of {dist.name})" if dist else ")")
            if self.pm.get_plugin(ep.name) is not None or self.pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                log.warning("plugin %s failed to import: %s: %s; continuing without it", where,
                            type(exc).__name__, exc)
                continue
            self.register(plugin, name=ep.name, kind="entry point", location=where)

    def _load_dir(self, folder: Path, seen: set[Path]) -> None:
        if not folder.is_dir():
            log.warning("plugins dir %s does not exist; no plugins loaded from it", folder)
            return
        for path in sorted(folder.glob("*.py")):
            real = path.resolve()
            if real in seen or path.name.startswith("_"):
                continue
            seen.add(real)
            module_name = f"dvd_vfx_plugin_{abs(hash(str(real))):x}_{path.stem}".replace("-", "_")
            try:
                spec = importlib.util.spec_from_file_location(module_name, real)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(module_name, None)
                log.warning("plugin %s failed to import: %s: %s; continuing without it", path,
                            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                continue
            self.register(module, name=str(path), kind="plugins dir", location=str(path))

    # -- what plugins provide ------------------------------------------------------------------
    def call(self, hook_name: str, **kwargs):
        return call_hook(self.pm, hook_name, **kwargs)

    def plugins(self) -> list[PluginSource]:
        return [self.sources[name] for name, _ in self.pm.list_name_plugin() if name in self.sources]

    def _registered(self, hook_name: str, kind) -> list:
        items = []
        for batch in self.call(hook_name):
            for item in batch or []:
                if not isinstance(item, kind):
                    raise PluginError(f"{hook_name} returned {item!r}, not a {kind.__name__}")
                items.append(item)
        return items

    def predictors(self) -> dict[str, PredictorFactory]:
        """Registered factories by name; the first of a name wins (third-party before built-in)."""
        found: dict[str, PredictorFactory] = {}
        for factory in self._registered("dvd_vfx_register_predictors", PredictorFactory):
            found.setdefault(factory.name, factory)
        return found

    def readers(self) -> list[ReaderInfo]:
        return self._registered("dvd_vfx_register_readers", ReaderInfo)

    def writers(self) -> list[WriterInfo]:
        return self._registered("dvd_vfx_register_writers", WriterInfo)

    def presets(self) -> dict:
        """name -> dvd_vfx.presets.Preset: shipped < plugins < user config dir."""
        from dvd_vfx import presets

        return presets.collect(self)

    def make_predictor(self, name: str = "dvd", settings: ModelSettings | None = None):
        factories = self.predictors()
        if name not in factories:
            raise InputError(f"unknown predictor {name!r}; registered: {', '.join(sorted(factories)) or 'none'} "
                             f"(see `dvd-vfx plugins`)")
        try:
            predictor = factories[name].create(settings or ModelSettings())
        except DvdError:
            raise
        except Exception as exc:
            raise plugin_error(self.pm, exc, f"predictor {name!r}") or PluginError(
                f"predictor {name!r} could not be built: {type(exc).__name__}: {exc}") from exc
        missing = [a for a in ("predict", "identity") if not callable(getattr(predictor, a, None))]
        if missing:
            raise PluginError(f"predictor {name!r} lacks {' and '.join(missing)}(); see the predictor "
                              f"contract in docs/hooks.md")
        return predictor

    def resolve_footage(self, source):
        resolved = self.call("dvd_vfx_resolve_footage", source=source)
        if resolved is None:
            raise InputError(f"no plugin can read footage of type {type(source).__name__} ({source!r}); "
                             f"pass a movie file, an image sequence pattern or a folder")
        return resolved

def _location(plugin) -> str:
    path = getattr(plugin, "__file__", None)
    if path:
        return str(path)
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


__all__ = ["DEFAULT_PLUGINS", "ModelSettings", "Plugins", "PluginSource", "PredictorFactory", "ReaderInfo",
           "WriterInfo", "blame", "call_hook"]
