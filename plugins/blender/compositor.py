"""The depth pass in Blender: the EXR sequence as an Image, wired into the scene's compositor.

Two API generations: Blender 4.x keeps the graph in ``scene.node_tree`` (``use_nodes``) with a
Composite node and compositor-only Math/MapRange/MixRGB nodes; Blender 5.0 keeps it in the node
group ``scene.compositing_node_group`` with a Group Output and the shared Math/MapRange/Mix
nodes. Every node this module owns is named ``DVD ...`` so a re-run updates them in place.
"""

from __future__ import annotations

import math
import os

import bpy

from .utils import exr
from .utils.shot import ImageUserMapping, sequence_pattern

PREFIX = "DVD "
FOG_NODES = ("Fog Range", "Fog Density", "Fog Exp", "Fog Amount", "Fog Colour", "Fog Mix")
RADIUS_NODES = ("Focus Offset", "Focus Distance", "Blur Radius")
X0, DX = -200, 220


def compositor_tree(scene, *, create: bool = True):
    """The scene's compositing node tree (5.0: compositing_node_group; 4.x: node_tree)."""
    if hasattr(scene, "compositing_node_group"):
        tree = scene.compositing_node_group
        if tree is None and create:
            tree = bpy.data.node_groups.new(f"{scene.name} Compositing", "CompositorNodeTree")
            scene.compositing_node_group = tree
        return tree
    if create and not scene.use_nodes:
        scene.use_nodes = True
    return scene.node_tree


def _node(tree, role: str, idnames: tuple[str, ...], location: tuple[float, float]):
    """The DVD node of this role, created with the first node type this Blender knows."""
    name = PREFIX + role
    node = tree.nodes.get(name)
    if node is not None and node.bl_idname in idnames:
        return node
    if node is not None:
        tree.nodes.remove(node)
    for idname in idnames:
        try:
            node = tree.nodes.new(idname)
        except RuntimeError:
            continue
        node.name = node.label = name
        node.location = location
        return node
    raise RuntimeError(f"this Blender has none of the node types {idnames}")


def _set(node, name: str, value) -> None:
    """A node setting that is a property in one Blender and an input socket in another."""
    if hasattr(node, name):
        setattr(node, name, value)
        return
    label = name.replace("_", " ").lower()
    for socket in node.inputs:
        if socket.identifier.lower() == name or socket.name.lower() == label:
            socket.default_value = value
            return
    raise AttributeError(f"{node.bl_idname} has no setting {name!r}")


def _output(node, *names):
    for n in names:
        for socket in node.outputs:
            if socket.enabled and (socket.identifier == n or socket.name == n):
                return socket
    raise KeyError(f"{node.name} has no output {names}; it has {[s.name for s in node.outputs]}")


def _input(node, *names):
    for n in names:
        for socket in node.inputs:
            if socket.enabled and (socket.identifier == n or socket.name == n):
                return socket
    raise KeyError(f"{node.name} has no input {names}; it has {[s.name for s in node.inputs]}")


def _link(tree, out_socket, in_socket) -> None:
    for link in list(in_socket.links):
        tree.links.remove(link)
    tree.links.new(out_socket, in_socket)


def depth_socket(node):
    """The Image node's depth output (the `depth` layer of a depth.Z EXR)."""
    for socket in node.outputs:
        if socket.name in ("depth", "depth.Z", "Z", "Depth"):
            return socket
    raise KeyError(f"the depth pass {node.image.filepath if node.image else ''} has no depth channel in Blender "
                   f"(outputs: {[s.name for s in node.outputs]}); was it written by dvd-vfx (channel depth.Z)?")


def load_depth_image(name: str, first_file: str, *, existing=None):
    """The pass as a SEQUENCE Image; an existing one is pointed at the new files and reloaded in place."""
    image = existing if existing is not None else bpy.data.images.get(name)
    path = bpy.path.relpath(first_file) if bpy.data.filepath else first_file
    if image is None:
        image = bpy.data.images.load(first_file, check_existing=False)
        image.name = name
    else:
        image.filepath = path
    image.source = "SEQUENCE"
    image.colorspace_settings.is_data = True
    image["dvd_vfx"] = True
    image.reload()
    return image


def _output_node(scene, tree):
    """Where the compositor's result goes: the group output (5.0) or the Composite node (4.x)."""
    if hasattr(scene, "compositing_node_group"):
        if not any(i.item_type == "SOCKET" and i.in_out == "OUTPUT" for i in tree.interface.items_tree):
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        node = next((n for n in tree.nodes if n.bl_idname == "NodeGroupOutput"), None)
        if node is None:
            node = tree.nodes.new("NodeGroupOutput")
            node.location = (X0 + 6 * DX, 0)
        return node, node.inputs[0]
    node = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite"), None)
    if node is None:
        node = tree.nodes.new("CompositorNodeComposite")
        node.location = (X0 + 6 * DX, 0)
    return node, _input(node, "Image")


def wire(scene, *, image, mapping: ImageUserMapping, mode: str, max_blur: float = 20.0,
         focus_disparity: float = 0.5, plate_clip=None,
         plate_image=None, plate_mapping: ImageUserMapping | None = None, fog: bool = False,
         fog_start: float = 0.0, fog_end: float = 100.0, fog_density: float = 0.05,
         fog_colour=(0.7, 0.75, 0.8, 1.0)) -> dict:
    """Image -> depth -> Defocus (Z) [-> fog] -> compositor output. Returns the DVD nodes by role."""
    tree = compositor_tree(scene)
    nodes = {}
    depth = nodes["Depth"] = _node(tree, "Depth", ("CompositorNodeImage",), (X0, -300))
    for role in ("Defocus",) + RADIUS_NODES:  # a mode switch rebuilds the defocus branch (and its drivers)
        _remove(tree, role)
    depth.image = image
    depth.frame_start, depth.frame_offset, depth.frame_duration = (mapping.frame_start, mapping.frame_offset,
                                                                    mapping.frame_duration)
    depth.use_auto_refresh = True
    if plate_clip is not None:
        plate = _node(tree, "Plate", ("CompositorNodeMovieClip",), (X0, 0))
        plate.clip = plate_clip
    else:
        plate = _node(tree, "Plate", ("CompositorNodeImage",), (X0, 0))
        plate.image = plate_image
        if plate_mapping is not None:
            plate.frame_start, plate.frame_offset, plate.frame_duration = (
                plate_mapping.frame_start, plate_mapping.frame_offset, plate_mapping.frame_duration)
    nodes["Plate"] = plate

    defocus = nodes["Defocus"] = _node(tree, "Defocus", ("CompositorNodeDefocus",), (X0 + 3 * DX, 0))
    _link(tree, _output(plate, "Image"), _input(defocus, "Image"))
    camera = ensure_camera(scene)
    if mode == "depth":
        # Depth in scene units into a z-buffer Defocus: the thin lens of the scene camera (focal length,
        # sensor, focus distance or focus object), with the camera's f-stop through a driver.
        # https://docs.blender.org/api/current/bpy.types.CompositorNodeDefocus.html
        defocus.scene = scene
        _set(defocus, "use_zbuffer", True)
        fstop = camera.data.dof.aperture_fstop
        _drive(tree, defocus, "f_stop", scene, "camera.data.dof.aperture_fstop", "fstop", fstop)
        _link(tree, depth_socket(depth), _input(defocus, "Z"))
        for role in RADIUS_NODES:
            _remove(tree, role)
    else:
        # Disparity is affine in 1/z, and a thin lens's circle of confusion is proportional to
        # |1/z - 1/focus| / N: radius = Max Blur * (2.8 / N) * |d - d_focus| px, fed to the Defocus as
        # a blur radius (use_zbuffer off: radius = Z * z_scale), N the scene camera's f-stop.
        _set(defocus, "use_zbuffer", False)
        _set(defocus, "z_scale", 1.0)
        diff = nodes["Focus Offset"] = _math(tree, "Focus Offset", "SUBTRACT", (X0 + DX, -450))
        absolute = nodes["Focus Distance"] = _math(tree, "Focus Distance", "ABSOLUTE", (X0 + 2 * DX, -450))
        radius = nodes["Blur Radius"] = _math(tree, "Blur Radius", "MULTIPLY", (X0 + 3 * DX, -450))
        _link(tree, depth_socket(depth), diff.inputs[0])
        diff.inputs[1].default_value = float(focus_disparity)
        _link(tree, diff.outputs[0], absolute.inputs[0])
        _link(tree, absolute.outputs[0], radius.inputs[0])
        fstop = camera.data.dof.aperture_fstop
        _drive(tree, radius.inputs[1], "default_value", scene, "camera.data.dof.aperture_fstop", "fstop",
               float(max_blur) * 2.8 / max(fstop, 0.01), expression=f"{float(max_blur):.6g} * 2.8 / max(fstop, 0.01)")
        _link(tree, radius.outputs[0], _input(defocus, "Z"))
    _set(defocus, "blur_max", float(max_blur) * 4.0)  # a clamp only: never the limit of a sane setting
    result = _output(defocus, "Image")

    if fog:
        rng = nodes["Fog Range"] = _node(tree, "Fog Range", ("CompositorNodeMapRange", "ShaderNodeMapRange"),
                                         (X0 + DX, -300))
        _set(rng, "use_clamp" if hasattr(rng, "use_clamp") else "clamp", True)
        rng.inputs["From Min"].default_value = fog_start
        rng.inputs["From Max"].default_value = fog_end
        # the distance travelled in fog, in scene units (0 before Fog Start, Fog End - Fog Start past Fog End):
        # amount = 1 - exp(-density * distance), density per scene unit (Beer-Lambert)
        rng.inputs["To Min"].default_value, rng.inputs["To Max"].default_value = 0.0, max(fog_end - fog_start, 0.0)
        _link(tree, depth_socket(depth), rng.inputs["Value"])
        steps = []
        for i, (role, op, value) in enumerate((("Fog Density", "MULTIPLY", -fog_density),
                                               ("Fog Exp", "EXPONENT", None),
                                               ("Fog Amount", "SUBTRACT", None))):
            math = nodes[role] = _node(tree, role, ("CompositorNodeMath", "ShaderNodeMath"),
                                       (X0 + (2 + i) * DX, -300))
            math.operation = op
            steps.append((math, value))
        (mul, _), (exp, _), (amount, _) = steps
        _link(tree, _output(rng, "Value", "Result"), mul.inputs[0])
        mul.inputs[1].default_value = -fog_density
        _link(tree, mul.outputs[0], exp.inputs[0])
        amount.inputs[0].default_value = 1.0  # 1 - exp(-density * t): exponential falloff
        _link(tree, exp.outputs[0], amount.inputs[1])
        colour = nodes["Fog Colour"] = _node(tree, "Fog Colour", ("CompositorNodeRGB",), (X0 + 4 * DX, -150))
        colour.outputs[0].default_value = tuple(fog_colour)
        mix = nodes["Fog Mix"] = _node(tree, "Fog Mix", ("CompositorNodeMixRGB", "ShaderNodeMix"),
                                       (X0 + 5 * DX, 0))
        if mix.bl_idname == "ShaderNodeMix":
            mix.data_type = "RGBA"
        _link(tree, amount.outputs[0], _input(mix, "Fac", "Factor_Float"))
        _link(tree, result, _input(mix, "Image", "A_Color"))
        _link(tree, colour.outputs[0], _input(mix, "Image_001", "B_Color"))
        result = _output(mix, "Image", "Result_Color")
    else:
        for role in FOG_NODES:
            _remove(tree, role)

    out_node, out_socket = _output_node(scene, tree)
    upstream = out_socket.links[0].from_node if out_socket.is_linked else None
    while upstream is not None and upstream.bl_idname == "NodeReroute":
        upstream = upstream.inputs[0].links[0].from_node if upstream.inputs[0].is_linked else None
    if upstream is None or upstream.name.startswith(PREFIX) or upstream.bl_idname == "CompositorNodeRLayers":
        _link(tree, result, out_socket)  # never rewire an artist's own graph
        drop_idle_render_layers(tree)
    nodes["Output"] = out_node
    return nodes


def drop_idle_render_layers(tree) -> int:
    """Remove Render Layers nodes that feed nothing but Viewers: Blender renders the 3D scene on F12 only
    when the compositor has a Render Layers node (4.x puts one in when compositing is turned on)."""
    def targets(node, seen=()):  # what the node feeds, through reroutes (4.5's default tree has one)
        found = set()
        for out in node.outputs:
            for link in out.links:
                if link.to_node.bl_idname == "NodeReroute" and link.to_node.name not in seen:
                    found |= targets(link.to_node, seen + (link.to_node.name,))
                elif link.to_node.bl_idname != "NodeReroute":
                    found.add(link.to_node.bl_idname)
        return found

    removed = 0
    for node in [n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"]:
        if targets(node) <= {"CompositorNodeViewer"}:
            tree.nodes.remove(node)
            removed += 1
    return removed


def _remove(tree, role: str) -> None:
    old = tree.nodes.get(PREFIX + role)
    if old is not None:
        tree.nodes.remove(old)
    anim = tree.animation_data
    if anim is not None:  # and the node's drivers
        for fcurve in [f for f in anim.drivers if f.data_path.startswith(f'nodes["{PREFIX + role}"]')]:
            anim.drivers.remove(fcurve)


def _math(tree, role: str, operation: str, location):
    node = _node(tree, role, ("CompositorNodeMath", "ShaderNodeMath"), location)
    node.operation = operation
    return node


def _drive(tree, owner, prop: str, scene, data_path: str, var_name: str, now: float, *, expression=None):
    """A driver on owner.prop reading scene.<data_path> (e.g. the scene camera's f-stop).

    Simple expressions (arithmetic, max) are evaluated without Python, so they run even where
    auto-run of scripts is off. https://docs.blender.org/manual/en/latest/animation/drivers/drivers_panel.html
    """
    try:
        owner.driver_remove(prop)
    except TypeError:
        pass
    fcurve = owner.driver_add(prop)
    driver = fcurve.driver
    driver.type = "SCRIPTED"
    var = driver.variables.new()
    var.name = var_name
    var.type = "SINGLE_PROP"
    var.targets[0].id_type = "SCENE"
    var.targets[0].id = scene
    var.targets[0].data_path = data_path
    driver.expression = expression or var_name
    setattr(owner, prop, now)  # the value until the depsgraph evaluates the driver
    return fcurve


def ensure_camera(scene):
    """The scene camera; a new one ("DVD Camera") when the scene has none, so the Defocus has a lens."""
    if scene.camera is not None and scene.camera.type == "CAMERA":
        return scene.camera
    data = bpy.data.cameras.new("DVD Camera")
    ob = bpy.data.objects.new("DVD Camera", data)
    scene.collection.objects.link(ob)
    scene.camera = ob
    return ob


def remove(scene) -> None:
    """Take every DVD node out of the compositor (the Image datablock stays)."""
    tree = compositor_tree(scene, create=False)
    if tree is None:
        return
    for node in [n for n in tree.nodes if n.name.startswith(PREFIX)]:
        _remove(tree, node.name[len(PREFIX):])


def first_file(pattern: str, first_frame: int) -> str:
    """The first file of `/out/shot.depth.####.exr`."""
    head, base = os.path.split(pattern)
    hashes = base.count("#")
    return os.path.join(head, base.replace("#" * hashes, f"{first_frame:0{hashes}d}"))


def pass_file_at(scene, frame: int | None = None) -> str:
    """The pass file the DVD Depth node shows at a scene frame (default: the current one)."""
    tree = compositor_tree(scene, create=False)
    node = tree.nodes.get(PREFIX + "Depth") if tree is not None else None
    if node is None or node.image is None:
        raise RuntimeError("no depth pass in the compositor yet: press Render Depth first")
    frame = scene.frame_current if frame is None else frame
    file_frame = frame - node.frame_start + 1 + node.frame_offset
    first, last = node.frame_offset + 1, node.frame_offset + node.frame_duration
    file_frame = min(max(file_frame, first), last)  # outside the pass: its nearest frame (as the node holds it)
    path = bpy.path.abspath(node.image.filepath, library=node.image.library)
    pattern, _ = sequence_pattern(path)
    return first_file(pattern, file_frame)


def sample_pass(scene, x: float, y: float, frame: int | None = None) -> float:
    """The pass's value at plate pixel (x, y) from the TOP-left, at a scene frame."""
    path = pass_file_at(scene, frame)
    return exr.read_value(path, int(math.floor(x)), int(math.floor(y)))


def set_focus(scene, value: float, mode: str) -> str:
    """Write a sampled focus: depth -> the scene camera's DOF focus distance; disparity -> the radius map's focus."""
    if mode == "depth":
        camera = ensure_camera(scene)
        dof = camera.data.dof
        dof.use_dof = True
        dof.focus_object = None  # a focus object would win over the distance
        dof.focus_distance = float(value)
        return f"Focus distance {value:.4g} (camera {camera.name})"
    scene.dvd_vfx.focus_disparity = float(value)
    tree = compositor_tree(scene, create=False)
    node = tree.nodes.get(PREFIX + "Focus Offset") if tree is not None else None
    if node is not None:
        node.inputs[1].default_value = float(value)
    return f"Focus disparity {value:.4g}"
