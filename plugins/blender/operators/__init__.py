"""One operator per module; registered in this order."""

from . import cancel_depth, check_weights, render_depth, set_focus

modules = (check_weights, render_depth, cancel_depth, set_focus)


def register():
    for module in modules:
        module.register()


def unregister():
    for module in reversed(modules):
        module.unregister()
