"""Built-in presets: the *.toml files shipped inside the package (dvd_vfx/presets/)."""

from __future__ import annotations

from dvd_vfx.hookspecs import hookimpl


@hookimpl(trylast=True)
def dvd_vfx_register_presets():
    from dvd_vfx.presets import shipped_preset_files

    return shipped_preset_files()
