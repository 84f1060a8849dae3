"""Host integrations (Nuke, ...): thin layers that drive `dvd-vfx render` out of process.

Nothing here imports torch, numpy or a host module at import time: a host's Python imports
these modules, and the tests import them without the host.
"""
