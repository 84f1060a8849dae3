"""Built-in behaviour, registered as plugins (``trylast``) so third-party plugins can override it.

Listed in dvd_vfx.plugins.DEFAULT_PLUGINS. None of these modules imports torch at import time.
"""
