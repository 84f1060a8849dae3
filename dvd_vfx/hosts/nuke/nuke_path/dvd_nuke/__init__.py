"""DVD Depth for Nuke: the NUKE_PATH face of ``dvd_vfx.hosts.nuke`` (all the logic lives there).

Nuke's Python needs ``dvd_vfx`` (and pluggy) importable. Either install dvd-vfx into it, or
run ``dvd-vfx install nuke``, which puts links to both in ``_dvd_lib`` beside this package;
that folder goes at the END of sys.path, so Nuke's own modules always win.
"""

import os
import sys

_HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _make_dvd_vfx_importable():
    try:
        import dvd_vfx  # noqa: F401
    except ImportError:
        lib = os.path.join(_HOME, "_dvd_lib")
        if os.path.isdir(lib) and lib not in sys.path:
            sys.path.append(lib)


_make_dvd_vfx_importable()

from dvd_vfx.hosts.nuke import *  # noqa: E402,F401,F403
from dvd_vfx.hosts.nuke import __all__, config  # noqa: E402,F401

config.set_home(_HOME)
register_callbacks()  # noqa: F405 (closing the script cancels its renders)
