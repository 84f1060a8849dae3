"""One operator per module; registered in this order."""

from . import cancel_depth, check_weights, render_depth

modules = (check_weights, render_depth, cancel_depth)


def register():
    for module in modules:
        module.register()


def unregister():
    for module in reversed(modules):
        module.unregister()
