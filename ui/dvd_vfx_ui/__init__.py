"""dvd-vfx panel: a standalone PyQt6 batch renderer for depth passes.

Layers (ayon publisher / rez-gui style):
  events.py, shots.py, settings.py, preview.py, controller/ -- Qt-free: the queue, the batch
      worker thread, settings and queue files, preview images (numpy). Testable without Qt.
  bridge.py, queue_model.py, preview_pane.py, main_window.py, app.py -- PyQt6: thin widgets that
      subscribe to the controller's events through one Qt signal (so they run on the UI thread).
Importing this package imports neither Qt nor torch.
"""

__version__ = "0.1.0"
