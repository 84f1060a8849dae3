# DVD Depth for Nuke (dvd-vfx). No UI here: this also runs in terminal/render mode, so saved
# scripts with DVD Depth nodes load anywhere. All logic lives in dvd_vfx.hosts.nuke.
import dvd_nuke  # noqa: F401
