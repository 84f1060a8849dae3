# DVD Depth for Nuke (dvd-vfx): Nodes > DVD > DVD Depth.
import dvd_nuke

dvd_nuke.add_menu()
