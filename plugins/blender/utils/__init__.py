"""Pure helpers of the Blender add-on: no bpy, so they are unit-tested in any Python."""
