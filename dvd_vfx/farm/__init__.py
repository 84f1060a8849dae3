"""Rendering beyond one process: a shot split into window-chunk tasks plus an assemble task,
run on a Ray cluster (``dvd-vfx farm ray``) or written as an Open Job Description template
(``dvd-vfx farm openjd``). The per-shot cache is the shared state between the tasks.

Needs the ``farm`` extra (ray, openjd-cli) only for running; planning imports neither.
"""
