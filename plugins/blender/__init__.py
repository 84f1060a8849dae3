"""dvd-vfx for Blender: depth passes for movie clips, wired into the compositor for defocus and fog.

The engine runs out of process (`dvd-vfx render --json-progress` in the engine's own Python,
driven by dvd_vfx.jobs.SubprocessJob); this add-on needs no torch. Pure helpers (paths, frame
mapping, engine discovery) live in utils/ and are tested without bpy.
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
