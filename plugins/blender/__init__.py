"""dvd-vfx for Blender: depth passes for movie clips, wired into the compositor for defocus and fog.

The engine runs out of process (`dvd-vfx render --json-progress` in the engine's own Python); the
add-on reads its JSON-lines job events with its own code (utils/job.py) and imports nothing of
dvd_vfx, torch or numpy. Pure helpers (paths, frame mapping, engine discovery, the job protocol,
the camera-solve projection, a small EXR reader) live in utils/ and are tested without bpy.
This folder is GPL-3.0-or-later (see LICENSE).
"""

from . import interface, operators, preferences, properties

modules = (properties, preferences, operators, interface)


def register():
    for module in modules:
        module.register()


def unregister():
    from . import runtime

    for run in list(runtime._RUNS.values()):  # no orphan engine processes after disabling
        run.request_cancel()
    runtime._RUNS.clear()
    for module in reversed(modules):
        module.unregister()
