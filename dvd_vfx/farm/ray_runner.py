"""`dvd-vfx farm ray`: (being written in this session)."""


def add_arguments(p) -> None:
    g = p.add_argument_group("ray")
    g.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    g.add_argument("--gpus-per-task", type=float, default=0, metavar="N", help="GPUs each window task needs")


def run(args, options) -> int:
    raise NotImplementedError("farm ray: in progress")
