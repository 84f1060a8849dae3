"""The add-on's per-scene settings: one PropertyGroup at ``scene.dvd_vfx``."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty, PointerProperty, StringProperty


class DVD_PG_settings(bpy.types.PropertyGroup):
    source: EnumProperty(name="Source", items=(
        ("CLIP", "Movie Clip", "The scene's active movie clip (or the Movie Clip editor's clip)"),
        ("IMAGE", "Image Sequence", "An image-sequence Image")), default="CLIP")
    # No poll= callback here: with one, bpy 4.2 crashes when the interpreter exits (Render Depth checks
    # that the image is a sequence instead)
    image: PointerProperty(name="Image", type=bpy.types.Image,
                           description="Image sequence to render a depth pass for")
    preset: StringProperty(name="Preset", default="",
                           description="dvd-vfx preset (`dvd-vfx presets ls`); empty: the preferences' default")
    mode: EnumProperty(name="Mode", items=(
        ("depth", "Depth", "Scene units from Near to Far (for Defocus with Use Z-Buffer)"),
        ("disparity", "Disparity", "Normalised 0..1, near = 1")), default="depth")
    near: FloatProperty(name="Near", default=1.0, min=1e-4, soft_max=1000, description="Depth of the nearest 2%")
    far: FloatProperty(name="Far", default=100.0, min=1e-3, soft_max=100000, description="Depth of the farthest 2%")
    use_frame_range: BoolProperty(name="Frame Range", default=False,
                                  description="Render only these source frames (default: the whole clip)")
    frame_first: IntProperty(name="First", default=1)
    frame_last: IntProperty(name="Last", default=100)
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="//depth/<clip>/",
                               description="Folder for <clip>.depth.####.exr; // is the .blend's folder")
    use_solve: BoolProperty(name="Scene Scale from Solve", default=True,
                            description="When the clip has a camera solve, render depth in the scene's units: every "
                                        "bundle, projected through the solved camera, is a known distance (anchors); "
                                        "Near/Far are then not used")
    max_blur: FloatProperty(name="Max Blur", default=20.0, min=0.0, soft_max=200.0, subtype="PIXEL",
                            description="Disparity mode: blur radius in px across the shot's whole depth range at "
                                        "f/2.8 (scaled by 2.8 / the camera's f-stop). Also 1/4 of the Defocus clamp")
    focus_disparity: FloatProperty(name="Focus", default=0.5, min=0.0, max=1.0,
                                   description="Disparity mode: the disparity in focus (pick it with Focus on Point/Track)")
    focus_point: FloatVectorProperty(name="Focus Point", size=2, default=(0.5, 0.5), min=0.0, max=1.0,
                                     description="Where Focus on Point samples the pass: 0..1 across the frame, "
                                                 "from the bottom-left (as marker positions)")
    use_fog: BoolProperty(name="Fog", default=False, description="Add depth fog after the defocus")
    fog_start: FloatProperty(name="Fog Start", default=0.0, min=0.0, subtype="DISTANCE",
                             description="Depth where the fog begins, scene units")
    fog_end: FloatProperty(name="Fog End", default=100.0, min=0.0, subtype="DISTANCE",
                           description="Depth past which the fog stops thickening, scene units")
    fog_density: FloatProperty(name="Density", default=0.05, min=0.0, soft_max=2.0, precision=4,
                               description="Per scene unit: the fog hides 1 - exp(-density * distance in fog)")
    fog_colour: FloatVectorProperty(name="Fog Colour", subtype="COLOR", size=4, min=0.0, soft_max=1.0,
                                    default=(0.7, 0.75, 0.8, 1.0))
    # runtime display (written only on the main thread, by the running job)
    status: StringProperty(name="Status", default="", options={"SKIP_SAVE"})
    solve_status: StringProperty(name="Scene Scale", default="",
                                 description="What the last render's scene scale came from (bundles, fit error)")
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})


classes = (DVD_PG_settings,)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.dvd_vfx = PointerProperty(type=DVD_PG_settings)


def unregister():
    del bpy.types.Scene.dvd_vfx
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
