"""The documentation matches the code: hooks (docstrings and docs/hooks.md), job payloads, the CLI.

No torch and no rendering here: these tests read docstrings, signatures, markdown and the
argparse parser.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from dvd_vfx import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS_MD = ROOT / "docs" / "hooks.md"


def _hookspecs() -> dict:
    """Every function of dvd_vfx.hookspecs marked with @hookspec, by name."""
    marker = f"{hookspecs.PROJECT}_spec"  # the attribute pluggy's HookspecMarker sets
    return {name: fn for name, fn in vars(hookspecs).items()
            if inspect.isfunction(fn) and hasattr(fn, marker)}


HOOKS = _hookspecs()


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """Every markdown heading written as a call, ``## name(arg1, arg2)``: (name, [args])."""
    return [(m.group(1), [a.strip() for a in m.group(2).split(",") if a.strip()])
            for m in re.finditer(r"^#+\s+`?(\w+)\(([^()]*)\)`?\s*$", text, re.M)]


# -- Hooks: docs/hooks.md and the hookspec docstrings ------------------------------------------


def test_hookspecs_are_found():
    assert len(HOOKS) >= 12
    assert all(name.startswith("dvd_vfx_") for name in HOOKS)
    stray = [name for name, fn in vars(hookspecs).items()
             if name.startswith("dvd_vfx_") and inspect.isfunction(fn) and name not in HOOKS]
    assert not stray, f"functions named like hooks but not marked @hookspec: {stray}"


def test_every_hookspec_has_one_section_headed_with_its_arguments():
    sections = _sections(HOOKS_MD.read_text(encoding="utf-8"))
    names = [name for name, _ in sections]
    for name, fn in HOOKS.items():
        assert names.count(name) == 1, f"docs/hooks.md needs exactly one section '## {name}(...)'"
        args = dict(sections)[name]
        assert args == list(inspect.signature(fn).parameters), \
            f"docs/hooks.md: the heading of {name} must name its arguments {list(inspect.signature(fn).parameters)}"


def test_every_hook_section_names_an_existing_hook():
    unknown = [f"{name}({', '.join(args)})" for name, args in _sections(HOOKS_MD.read_text(encoding="utf-8"))
               if name not in HOOKS]
    assert not unknown, f"docs/hooks.md has sections for hooks that do not exist: {unknown}"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hookspec_docstring_describes_its_parameters_and_result(name):
    fn = HOOKS[name]
    doc = inspect.getdoc(fn) or ""
    lines = doc.splitlines()
    assert lines and lines[0].strip(), f"{name}: needs a docstring starting with a one-line summary"
    assert len(lines) == 1 or not lines[1].strip(), f"{name}: the summary is one line, then a blank line"
    signature = inspect.signature(fn)
    params = list(signature.parameters)
    described = re.findall(r"^:param (\w+):(.*)$", doc, re.M)
    assert [p for p, _ in described] == params, \
        f"{name}: describe each parameter once, in order, as ':param NAME: ...' (want {params})"
    for param, text in described:
        assert text.strip(), f"{name}: ':param {param}:' is empty"
    returns = re.findall(r"^:returns:(.*)$", doc, re.M)
    assert len(returns) == 1 and returns[0].strip(), f"{name}: say what it returns in one ':returns:' field"
    # the types are the annotations (help() shows them); the docstring gives meaning, unit, range
    missing = [p for p, v in signature.parameters.items() if v.annotation is inspect.Parameter.empty]
    assert not missing, f"{name}: annotate the types of {missing}"
    assert signature.return_annotation is not inspect.Signature.empty, f"{name}: annotate the return type"


# -- Job payloads: dvd_vfx.jobs docstrings and the event table in docs/hooks.md ----------------


def _args_section(cls) -> list[tuple[str, str]]:
    """The ``Args:`` entries of a class docstring (diffusers' style): [(name, description)]."""
    doc = inspect.getdoc(cls) or ""
    assert "\nArgs:\n" in doc, f"{cls.__name__}: document its fields in an 'Args:' section"
    body = doc.split("\nArgs:\n", 1)[1]
    entries = re.findall(r"^    (\w+) \(`[^`]+`(?: or `[^`]+`)*\):\n((?:        .*\n?)+)", body, re.M)
    return [(name, " ".join(text.split())) for name, text in entries]


@pytest.mark.parametrize("cls_name", ["Job", "PassInfo", "JobResult"])
def test_every_job_payload_field_is_documented(cls_name):
    from dvd_vfx import jobs

    cls = getattr(jobs, cls_name)
    fields = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    documented = _args_section(cls)
    assert [name for name, _ in documented] == fields, \
        f"{cls_name}: document each field once, in order, as 'name (`type`):' + an indented description"
    for name, text in documented:
        assert len(text) >= 20, f"{cls_name}.{name}: say what it holds (shape, unit, range)"


def test_every_json_event_and_field_is_documented_in_the_jobs_module():
    from dvd_vfx import jobs

    doc = inspect.getdoc(jobs) or ""
    common = list(jobs.make_event("progress", "0" * 12))
    for name in common:
        assert re.search(rf"^    {name} \(`\w+`\):$", doc, re.M), f"dvd_vfx.jobs: document the event field {name!r}"
    payloads = {
        "job_started": ["job", *jobs.Job(id="x", source="", out_dir="", shot=None, predictor="").to_dict()],
        "progress": ["stage", "done", "total"],
        "log": ["level", "message"],
        "pass_written": ["pass", *[f.name for f in dataclasses.fields(jobs.PassInfo)]],
        "job_finished": ["result"],
        "job_failed": ["error", *jobs.error_to_dict(ValueError("x"))],
    }
    assert set(payloads) == set(jobs.EVENTS)
    for event, names in payloads.items():
        m = re.search(rf"^    {event} -> (.*(?:\n        .*)*)", doc, re.M)
        assert m, f"dvd_vfx.jobs: document the payload of {event!r} as '    {event} -> field (`type`): ...'"
        for name in names:
            assert re.search(rf"(?<![\w-]){name}(?![\w-])", m.group(1)), \
                f"dvd_vfx.jobs: the {event!r} payload documentation does not name {name!r}"


def test_the_event_table_in_hooks_md_lists_every_payload_field():
    from dvd_vfx import jobs

    text = HOOKS_MD.read_text(encoding="utf-8")
    rows = {m.group(1): (m.group(2), {f.strip() for f in m.group(3).split(",")})
            for m in re.finditer(r"^\| `(\w+)` \| `(\w+)`: `\{([^}]*)\}`", text, re.M)}
    job_keys = set(jobs.Job(id="x", source="", out_dir="", shot=None, predictor="").to_dict())
    want = {
        "job_started": ("job", job_keys),
        "pass_written": ("pass", {f.name for f in dataclasses.fields(jobs.PassInfo)}),
        "job_finished": ("result", {f.name for f in dataclasses.fields(jobs.JobResult)}),
        "job_failed": ("error", set(jobs.error_to_dict(ValueError("x")))),
    }
    assert rows == want
    listed = re.findall(r"^\| `(\w+)` \|", text, re.M)
    assert [e for e in listed if e in jobs.EVENTS] == list(jobs.EVENTS), "docs/hooks.md: one row per event, in order"


# -- The command line: every command and long flag is in the docs ------------------------------


def _walk(parser, path):
    """(command path, parser) for the parser and every subcommand below it (argparse's own tree)."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _cli():
    """Every command path (``dvd-vfx farm openjd``) and every long option, with the commands that take it."""
    from dvd_vfx.cli import build_parser

    commands, options = [], {}
    for path, parser in _walk(build_parser(), ("dvd-vfx",)):
        commands.append(" ".join(path))
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--"):
                    options.setdefault(flag, []).append(" ".join(path))
    return commands, options


def _docs_text() -> str:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return " ".join(" ".join(p.read_text(encoding="utf-8").split()) for p in files)  # line breaks -> spaces


def test_the_cli_walk_finds_every_command():
    commands, options = _cli()
    for expected in ("dvd-vfx render", "dvd-vfx farm openjd", "dvd-vfx cache clear", "dvd-vfx comp fog"):
        assert expected in commands
    for expected in ("--threads", "--replace", "--part", "--view", "--json-progress", "--no-vae-tiling"):
        assert expected in options


def test_every_cli_command_is_documented():
    text = _docs_text()
    missing = [c for c in _cli()[0] if not re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text)]
    assert not missing, f"commands missing from README.md / docs/*.md (add them to docs/cli.md): {missing}"


def test_every_cli_flag_is_documented():
    text = _docs_text()
    missing = {flag: where for flag, where in _cli()[1].items()
               if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)}
    assert not missing, f"flags missing from README.md / docs/*.md (add them to docs/cli.md): {missing}"
