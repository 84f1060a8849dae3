"""What Blender, Nuke and the panel import in their own Python stays light and old-Python friendly.

Host-side modules (jobs, hookspecs, plugin loading, presets, dvd_vfx.hosts.*) are imported in
Pythons without torch or numpy, and Nuke 14 runs Python 3.9 (Nuke 15: 3.10, Nuke 16: 3.11). The
hosts get dvd_vfx and its host dependencies (pluggy, platformdirs, tomli) from the engine's
environment through the folder `dvd-vfx install nuke` makes, so the old-Python checks import
exactly what that installer bridges.
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


@pytest.fixture(scope="module")
def nuke_bridge(tmp_path_factory):
    """What `dvd-vfx install nuke` bridges into Nuke's Python: dvd_vfx plus the host dependencies (pluggy,
    platformdirs, tomli), each checked by the installer to run on Python 3.9."""
    from dvd_vfx.hosts.nuke import install

    installed = install.install_nuke(tmp_path_factory.mktemp("dot_nuke"))
    return installed.folder / install.LIB_NAME


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
            params.append(pytest.param(python, version, module, id=f"py{label}-{module}"))
    return params


def _run_bridged(python, bridge, script, tmp_path, env=None):
    # -S -E: no site-packages, no PYTHON* variables; .pyc files go to tmp_path, not the checkout
    return subprocess.run([python, "-S", "-E", "-X", f"pycache_prefix={tmp_path / 'pycache'}", "-c",
                           f"import sys; sys.path.append({str(bridge)!r})\n" + script],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL,
                          env=env)


@pytest.mark.parametrize("python,version,module", _old_python_params())
def test_host_module_imports_on_old_python(python, version, module, nuke_bridge, tmp_path):
    """Import with only the stdlib and what `dvd-vfx install nuke` bridges in, no site-packages."""
    proc = _run_bridged(python, nuke_bridge, f"import {module}", tmp_path)
    assert proc.returncode == 0, f"import {module} fails on Python {version}:\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("label,python,version", [p for p in OLD_PYTHONS if p[2]] or
                         [pytest.param("3.9", None, None, marks=pytest.mark.skip(reason="no Python 3.9/3.10"))])
def test_presets_and_plugins_work_on_old_python(label, python, version, nuke_bridge, tmp_path):
    """What the node does in Nuke 14/15: list presets, a user preset in TOML included (tomli where tomllib is
    missing), plugins from a folder and entry points (importlib.metadata without group=)."""
    config = tmp_path / "config"
    (config / "dvd-vfx" / "presets").mkdir(parents=True)
    (config / "dvd-vfx" / "presets" / "dailies.toml").write_text('description = "studio"\nresolution = 256\n')
    script = textwrap.dedent("""
        import json, sys
        from dvd_vfx.engine import Engine
        from dvd_vfx.hosts.nuke.node import preset_names
        engine = Engine()
        print(json.dumps({"presets": sorted(engine.presets()), "node": preset_names(),
                          "resolution": engine.presets()["dailies"].values.get("resolution"),
                          "tomllib": "tomllib" in sys.modules, "tomli": "tomli" in sys.modules}))
    """)
    env = {"XDG_CONFIG_HOME": str(config), "HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")}
    proc = _run_bridged(python, nuke_bridge, script, tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"standard", "preview", "dailies"} <= set(report["presets"])
    assert report["node"][0] == "standard" and "dailies" in report["node"]
    assert report["resolution"] == 256
    assert report["tomli"] and not report["tomllib"]  # 3.9/3.10: the bridged tomli parsed the user preset


def test_installer_refuses_a_dependency_that_does_not_run_on_nuke_14(monkeypatch, tmp_path):
    from dvd_vfx.errors import InputError
    from dvd_vfx.hosts.nuke import install

    assert install.python_admits(">=3.9", (3, 9)) and not install.python_admits(">=3.10", (3, 9))
    assert install.python_admits(">=3.8,<4,!=3.0.*", (3, 9)) and not install.python_admits("~=3.11", (3, 9))
    real = importlib.metadata.metadata

    def metadata(dist):
        data = real(dist)
        if dist == "pluggy":
            return {"Requires-Python": ">=3.10", "Version": "1.7.0"}
        return data

    monkeypatch.setattr(install.importlib.metadata, "metadata", metadata)
    with pytest.raises(InputError, match=r"pluggy 1\.7\.0 .*requires Python >=3\.10.*pip install 'pluggy>=1\.3,<1\.7'"):
        install.install_nuke(tmp_path / "dot_nuke")
    assert not (tmp_path / "dot_nuke").exists()  # refused before anything was written


def test_bridged_packages_are_pure_python(nuke_bridge):
    """Compiled builds (tomli's mypyc wheel for the engine's Python) are bridged as sources: Nuke 16 (3.11)
    would otherwise load an extension module whose helper is not in the bridge."""
    compiled = [p for p in nuke_bridge.rglob("*") if p.suffix in (".so", ".pyd")
                and "dvd_vfx" not in p.relative_to(nuke_bridge).parts[:1]]
    assert compiled == []
    for name in ("pluggy", "platformdirs", "tomli", "dvd_vfx"):
        assert (nuke_bridge / name / "__init__.py").is_file(), name


