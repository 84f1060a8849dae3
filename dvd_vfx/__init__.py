"""dvd-vfx: temporally stable depth passes for whole shots.

Importing this package must stay cheap and must not import torch: hosts (Blender, Nuke)
import it in Pythons that have no torch. The model stack lives in ``dvd_vfx.model``.
"""

__version__ = "0.1.0"
