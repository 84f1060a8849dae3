"""`dvd-vfx ...`: the command line. Exit codes: 0 ok, 2 bad input/usage, 3 weights, 130 interrupted, 1 unexpected."""

from __future__ import annotations

import argparse
import logging
import sys

from dvd_vfx import __version__
from dvd_vfx.errors import DvdError

log = logging.getLogger("dvd_vfx")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"dvd-vfx: error: {message}", file=sys.stderr)
        sys.exit(2)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--weights", metavar="DIR", help="weights folder (default: $DVD_VFX_WEIGHTS, else the user data dir)")
    g.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu | mps (default auto)")
    g.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32")
    g.add_argument("--vae-tiling", action=argparse.BooleanOptionalAction, default=None,
                   help="tile the VAE for large frames (default: automatic above 1280x720 working size)")
    g.add_argument("--offload", action="store_true", help="keep networks on the GPU only while they run (small GPUs)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dvd-vfx", description="Temporally stable depth passes (OpenEXR) for whole shots.")
    parser.add_argument("--version", action="version", version=f"dvd-vfx {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    w = sub.add_parser("weights", help="check or fetch the DVD model weights")
    wsub = w.add_subparsers(dest="weights_command", required=True, parser_class=_Parser)
    wc = wsub.add_parser("check", help="validate a weights folder (files, keys, shapes, sha256)")
    wc.add_argument("folder", nargs="?", help="weights folder (default: --weights resolution order)")
    wc.add_argument("--no-hash", action="store_true", help="skip the sha256 of the files (fast)")
    wf = wsub.add_parser("fetch", help="download the official files from Hugging Face (needs network)")
    wf.add_argument("folder", nargs="?", help="destination (default: the user data dir)")
    wf.add_argument("--version", dest="dvd_version", choices=("1.0", "1.1"), default="1.1")

    return parser


def _cmd_weights(args) -> int:
    from dvd_vfx.model import weights as wt

    folder = wt.resolve_weights_dir(args.folder)
    if args.weights_command == "check":
        try:
            lines = wt.check_weights(folder, with_hash=not args.no_hash)
        except DvdError as exc:
            print(f"weights check FAILED: {exc}", file=sys.stderr)
            return exc.exit_code
        print("\n".join(lines))
        print("weights OK")
        return 0
    print(f"downloading DVD {args.dvd_version} into {folder} ({wt.LICENCE})")
    for path in wt.fetch_weights(folder, version=args.dvd_version):
        print(f"  {path}")
    return 0


_HANDLERS = {"weights": _cmd_weights}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="dvd-vfx: %(levelname)s: %(message)s" if args.verbose else "dvd-vfx: %(message)s")
    for name in ("diffusers", "torch", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        code = _HANDLERS[args.command](args)
    except DvdError as exc:
        print(f"dvd-vfx: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("dvd-vfx: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = 1
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
