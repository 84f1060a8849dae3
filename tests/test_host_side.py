"""What Blender, Nuke and the panel import in their own Python stays light and old-Python friendly.

Host-side modules (jobs, hookspecs, plugin loading, presets, dvd_vfx.hosts.*) are imported in
Pythons without torch or numpy, and Nuke 14 runs Python 3.9 (Nuke 15: 3.10). The hosts get
dvd_vfx, pluggy and platformdirs from the engine's environment (links appended to sys.path by
`dvd-vfx install nuke` / the Blender add-on), so the old-Python checks use this environment's
pluggy too.
"""

from __future__ import annotations

import ast
import glob
import importlib.metadata
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dvd_vfx"


def _host_modules() -> list[str]:
    """Every module a host's Python imports: found by walking the packages, so new ones are covered."""
    import dvd_vfx.default_plugins
    import dvd_vfx.hosts

    names = ["dvd_vfx", "dvd_vfx.errors", "dvd_vfx.hookspecs", "dvd_vfx.jobs", "dvd_vfx.plugins",
             "dvd_vfx.engine", "dvd_vfx.jsonvalues", "dvd_vfx.progress", "dvd_vfx.presets", "dvd_vfx.default_plugins", "dvd_vfx.hosts"]
    for package in (dvd_vfx.default_plugins, dvd_vfx.hosts):
        # nuke_path/ is not a package: Nuke runs it with `nuke` importable (compiled below, not imported)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return sorted(set(names))


HOST_MODULES = _host_modules()

# Host-side source files, including the NUKE_PATH folder that Nuke runs (and its copy in plugins/nuke).
HOST_FILES = sorted({
    *(PACKAGE / p for p in ("__init__.py", "errors.py", "hookspecs.py", "jobs.py", "plugins.py")),
    *PACKAGE.glob("presets/*.py"),
    *PACKAGE.glob("default_plugins/*.py"),
    *PACKAGE.glob("hosts/**/*.py"),
    *ROOT.glob("plugins/nuke/**/*.py"),
})

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    BLOCKED = ("torch", "numpy")
    attempts = []

    class Blocker(importlib.abc.MetaPathFinder):   # a host Python without torch or numpy
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ImportError(f"No module named {name!r} (blocked: host-side code must not need it)")

    sys.meta_path.insert(0, Blocker())
""")


def _run(python, script: str, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-c", script, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


# -- This Python, without torch and numpy ------------------------------------------------------


def test_the_host_module_list_is_complete():
    for expected in ("dvd_vfx.jobs", "dvd_vfx.hookspecs", "dvd_vfx.plugins", "dvd_vfx.presets",
                     "dvd_vfx.hosts.nuke", "dvd_vfx.hosts.nuke.node", "dvd_vfx.hosts.nuke.worker",
                     "dvd_vfx.hosts.blender", "dvd_vfx.default_plugins.predictors"):
        assert expected in HOST_MODULES
    assert PACKAGE / "hosts" / "nuke" / "nuke_path" / "menu.py" in HOST_FILES


@pytest.mark.parametrize("module", HOST_MODULES)
def test_host_module_imports_without_torch_or_numpy(module):
    script = BLOCKER + textwrap.dedent(f"""
        import json
        import {module}
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(json.dumps({{"attempts": attempts, "heavy": heavy}}))
    """)
    proc = _run(sys.executable, script)
    assert proc.returncode == 0, f"import {module} failed without torch/numpy:\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"attempts": [], "heavy": []}, f"import {module} tried to import {report['attempts']}"


def test_plugin_loading_and_presets_work_without_torch_or_numpy(tmp_path):
    """What a host does with the Engine: load plugins (defaults + a plugins folder), list, read presets."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "studio.py").write_text(textwrap.dedent("""
        from dvd_vfx.hookspecs import hookimpl
        from dvd_vfx.presets import Preset

        @hookimpl
        def dvd_vfx_register_presets():
            return [Preset("studio", {"resolution": 256}, "studio dailies")]
    """))
    script = BLOCKER + textwrap.dedent("""
        import json
        from dvd_vfx.engine import Engine

        engine = Engine(plugins_dirs=[sys.argv[1]], entry_points=False)
        report = {
            "plugins": sorted(p.kind for p in engine.plugins()),
            "predictors": sorted(engine.predictors()),
            "readers": sorted(r.name for r in engine.readers()),
            "writers": sorted(w.name for w in engine.writers()),
            "presets": sorted(engine.presets()),
            "attempts": attempts,
            "heavy": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
        }
        print(json.dumps(report))
    """)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}  # no user presets
    proc = _run(sys.executable, script, str(tmp_path / "plugins"), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["attempts"] == [] and report["heavy"] == []
    assert "plugins dir" in report["plugins"] and "default" in report["plugins"]
    assert "dvd" in report["predictors"]
    assert {"video", "sequence"} <= set(report["readers"]) and report["writers"]
    assert {"standard", "studio"} <= set(report["presets"])


# -- Python 3.9 / 3.10 (Nuke 14 / Nuke 15) -----------------------------------------------------


def _python(version: str) -> str | None:
    found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python")))
    return found[-1] if found else shutil.which(f"python{version}")


def _version(python: str | None) -> str | None:
    if python is None:
        return None
    proc = subprocess.run([python, "-S", "-E", "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() if proc.returncode == 0 else None


PY39 = _python("3.9")
PY310 = _python("3.10")
OLD_PYTHONS = [(label, python, _version(python)) for label, python in (("3.9", PY39), ("3.10", PY310))]


def test_host_side_code_has_no_annotations_that_need_python_3_10_at_runtime():
    """``X | Y`` in an annotation is evaluated at import (3.10+) unless the module has lazy annotations."""
    bad = []
    for path in HOST_FILES:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        lazy = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                   and any(a.name == "annotations" for a in n.names) for n in tree.body)
        if lazy:
            continue
        annotations = [n.annotation for n in ast.walk(tree) if isinstance(n, (ast.arg, ast.AnnAssign)) and n.annotation]
        annotations += [n.returns for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and n.returns]
        for annotation in annotations:
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(annotation)):
                bad.append(f"{path.relative_to(ROOT)}:{annotation.lineno}")
    assert not bad, f"add `from __future__ import annotations` (or use Optional/Union) in: {bad}"


@pytest.mark.skipif(PY39 is None, reason="no Python 3.9 interpreter (~/.pyenv/versions/3.9.*/bin/python or python3.9)")
def test_host_side_code_compiles_on_python_3_9(tmp_path):
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")}  # no .pyc in the checkout
    proc = subprocess.run([PY39, "-m", "py_compile", *map(str, HOST_FILES)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, f"host-side code does not compile on Python 3.9:\n{proc.stderr[-3000:]}"


class KnownFailure(Exception):
    """The import failed exactly as the xfail reason says (anything else fails the test)."""


def _requires_python(dist: str) -> str:
    try:
        return importlib.metadata.metadata(dist).get("Requires-Python") or ""
    except importlib.metadata.PackageNotFoundError:
        return ""


def _supports(dist: str, python_version: str) -> bool:
    from packaging.specifiers import SpecifierSet  # pytest's own dependency

    return SpecifierSet(_requires_python(dist)).contains(python_version)


# Modules whose import loads pluggy / tomllib (test_the_known_failure_lists_are_current checks it).
LOADS_PLUGGY = {"dvd_vfx.hookspecs", "dvd_vfx.jobs", "dvd_vfx.plugins", "dvd_vfx.engine", "dvd_vfx.default_plugins.footage",
                "dvd_vfx.default_plugins.predictors", "dvd_vfx.default_plugins.presets",
                "dvd_vfx.default_plugins.writers", "dvd_vfx.hosts.nuke.worker"}
LOADS_TOMLLIB = {"dvd_vfx.presets"}
PLUGGY_VERSION = importlib.metadata.version("pluggy")

# What goes wrong on an old Python today: substrings of the error, and the reason.
TOMLLIB_SIGNATURE = "No module named 'tomllib'"
PLUGGY_SIGNATURE = "cannot import name 'TypeAlias' from 'typing'"  # pluggy 1.7 uses 3.10's typing.TypeAlias


def _known_failure(python_version: str, module: str) -> tuple[str, str] | None:
    """(error substring, reason) when `module` is known not to import on `python_version`."""
    if module in LOADS_TOMLLIB and tuple(map(int, python_version.split(".")[:2])) < (3, 11):
        return (TOMLLIB_SIGNATURE, f"dvd_vfx.presets imports tomllib (Python 3.11+) at module level; "
                                   f"Python {python_version} has no tomllib (another issue's work)")
    if module in LOADS_PLUGGY and not _supports("pluggy", python_version):
        return (PLUGGY_SIGNATURE, f"the engine's pluggy {PLUGGY_VERSION} (Requires-Python "
                                  f"{_requires_python('pluggy')}) is what hosts bridge in, and it does not "
                                  f"import on Python {python_version} (another issue's work)")
    return None


def _old_python_params():
    params = []
    for label, python, version in OLD_PYTHONS:
        if version is None:
            params.append(pytest.param(None, label, "dvd_vfx", id=f"py{label}-missing",
                                       marks=pytest.mark.skip(reason=f"no working Python {label} interpreter "
                                                                     f"(~/.pyenv/versions/{label}.*/bin/python or "
                                                                     f"python{label})")))
            continue
        for module in HOST_MODULES:
            known = _known_failure(version, module)
            marks = [pytest.mark.xfail(strict=True, raises=KnownFailure, reason=known[1])] if known else []
            params.append(pytest.param(python, version, module, id=f"py{label}-{module}", marks=marks))
    return params


@pytest.mark.parametrize("python,version,module", _old_python_params())
def test_host_module_imports_on_old_python(python, version, module, tmp_path):
    """Import with only the stdlib and what hosts bridge in (dvd_vfx, pluggy, platformdirs), no site-packages."""
    import platformdirs
    import pluggy

    bridge = tmp_path / "bridge"
    bridge.mkdir()
    for origin in (PACKAGE, Path(pluggy.__file__).parent, Path(platformdirs.__file__).parent):
        (bridge / origin.name).symlink_to(origin, target_is_directory=True)
    script = f"import sys; sys.path.append({str(bridge)!r}); import {module}"
    # -S -E: no site-packages, no PYTHON* variables; .pyc files go to tmp_path, not the checkout
    proc = subprocess.run([python, "-S", "-E", "-X", f"pycache_prefix={tmp_path / 'pycache'}", "-c", script],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        known = _known_failure(version, module)
        if known and known[0] in proc.stderr:
            raise KnownFailure(proc.stderr.strip().splitlines()[-1])
        raise AssertionError(f"import {module} fails on Python {version}:\n{proc.stderr[-3000:]}")


def test_the_known_failure_lists_are_current():
    """LOADS_PLUGGY / LOADS_TOMLLIB name exactly the host modules whose import loads pluggy / tomllib."""
    script = textwrap.dedent("""
        import importlib, json, sys
        out = {}
        for name in sys.argv[1:]:
            for m in [m for m in sys.modules if m.startswith(("dvd_vfx", "pluggy", "tomllib"))]:
                del sys.modules[m]
            importlib.import_module(name)
            out[name] = sorted({m for m in ("pluggy", "tomllib") if m in sys.modules})
        print(json.dumps(out))
    """)
    proc = _run(sys.executable, script, *HOST_MODULES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loads = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {m for m, found in loads.items() if "pluggy" in found} == LOADS_PLUGGY
    assert {m for m, found in loads.items() if "tomllib" in found} == LOADS_TOMLLIB
