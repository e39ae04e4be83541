"""The ``reptile data`` commands: ``fetch``, ``check`` and ``pack`` (argparse wiring only).

``reptile_lib.cli`` calls :func:`add_data_commands` on its subparsers and then
``sys.exit(args.func(args))``. Exit codes: 0 success, 1 failure (data missing or invalid,
download or checksum failed; one ``error:`` line on stderr, no traceback), 2 bad usage (argparse),
130 interrupted. Until the main CLI exists, ``python -m reptile_lib.data.commands data check`` works.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DATA_ROOT_HELP = ("folder holding the data sets (omniglot/, cifar_fs/, miniimagenet/); default: $REPTILE_DATA, "
                  "else ../shared/datasets beside the repository, else ~/.cache/reptile-book/datasets")


def add_data_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``data fetch|check|pack`` to ``subparsers``; each sets ``func(args) -> exit code``."""
    data = subparsers.add_parser(
        "data", help="fetch, check or pack the data sets",
        description="Get and verify the data sets. Nothing is downloaded except by `data fetch`.",
        epilog="exit codes: 0 ok, 1 failed (one error line says what to do), 2 bad usage, 130 interrupted")
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    fetch = sub.add_parser(
        "fetch", help="download, verify (sha256 + MD5) and convert Omniglot or CIFAR-100",
        description="Download the official archive(s), check their published checksums, convert them to the "
                    "format of ../shared/datasets and move the result into place; on any failure nothing is "
                    "left behind. `omniglot` -> omniglot/*.npz (15 MB download); `cifar100` -> cifar_fs/ tiles "
                    "for CIFAR-FS and FC100 (161 MB download).",
        epilog="exit codes: 0 fetched (or already there), 1 download/checksum/conversion failed, 2 bad usage, "
               "130 interrupted")
    fetch.add_argument("name", choices=("omniglot", "cifar100"), help="which data set to fetch")
    fetch.add_argument("--data-root", metavar="DIR",
                       help="where to put it; default: $REPTILE_DATA, else ~/.cache/reptile-book/datasets "
                            "(a folder the loaders also search)")
    fetch.add_argument("--force", action="store_true", help="fetch again and replace an existing copy")
    fetch.set_defaults(func=_fetch)

    check = sub.add_parser(
        "check", help="verify what is under the data root and print a table",
        description="Check Omniglot (1,623 characters x 20, read in full) and CIFAR-100 (100 classes x 600 "
                    "with the CIFAR-FS and FC100 split columns), both required, and Mini-ImageNet if present.",
        epilog="exit codes: 0 every required data set is present and complete, 1 something required is missing "
               "or invalid (the table says what to run), 2 bad usage")
    check.add_argument("--data-root", metavar="DIR", help=DATA_ROOT_HELP)
    check.add_argument("--full", action="store_true", help="also decode every CIFAR tile (a few seconds more)")
    check.set_defaults(func=_check)

    pack = sub.add_parser(
        "pack", help="write a smaller (lossy) copy of the CIFAR tiles, e.g. for a GPU job",
        description="Re-encode the CIFAR-100 tiles into OUT/cifar_fs/{classes.csv, images/*.jpg, pack.json}. "
                    "The loaders read it when no .png tile is there, and name the split e.g. "
                    "cifar_fs/train@jpeg-q95 so results say which bytes were used. pack.json records the "
                    "format and the measured mean/max absolute pixel difference.",
        epilog="exit codes: 0 written, 1 failed (source missing, OUT/cifar_fs exists), 2 bad usage")
    pack.add_argument("name", choices=("cifar_fs",), help="what to pack (the CIFAR-100 tiles, used by cifar_fs and fc100)")
    pack.add_argument("--out", metavar="DIR", required=True, help="folder to write cifar_fs/ into (must not be the source)")
    pack.add_argument("--format", dest="fmt", choices=("jpeg", "webp", "png"), default="jpeg",
                      help="image format: jpeg (4:4:4, no chroma subsampling), webp, or png (lossless); default jpeg")
    pack.add_argument("--quality", type=int, default=95, metavar="Q",
                      help="JPEG/WebP quality, 1-100; default 95")
    pack.add_argument("--data-root", metavar="DIR", help="where to read the tiles from; " + DATA_ROOT_HELP)
    pack.add_argument("--force", action="store_true", help="replace OUT/cifar_fs if it exists")
    pack.set_defaults(func=_pack)
    return data


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_FAIL


def _expected_errors() -> tuple[type[BaseException], ...]:
    from .fetch import FetchError
    return (FetchError, FileNotFoundError, FileExistsError, ValueError, OSError)


def _run(fn, *a, **kw) -> int:
    try:
        return fn(*a, **kw)
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _expected_errors() as e:
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


def _fetch(args: argparse.Namespace) -> int:
    from .fetch import fetch

    def go() -> int:
        fetch(args.name, args.data_root, force=args.force)
        return EXIT_OK
    return _run(go)


def _check(args: argparse.Namespace) -> int:
    from .check import check_all, format_table

    def go() -> int:
        rows = check_all(args.data_root, full=args.full)
        print(format_table(rows))
        return EXIT_OK if all(r.ok for r in rows if r.required) else EXIT_FAIL
    return _run(go)


def _pack(args: argparse.Namespace) -> int:
    from .cifar import pack_cifar

    def go() -> int:
        info = pack_cifar(args.data_root, args.out, fmt=args.fmt, quality=args.quality, force=args.force)
        print(f"wrote {args.out}/cifar_fs ({info['encoding']}): {info['bytes'] / 2**20:.1f} MiB, mean |diff| "
              f"{info['mean_abs_diff']:.3f}, max |diff| {info['max_abs_diff']} (of 255)")
        return EXIT_OK
    return _run(go)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reptile_lib.data.commands data ...`` (the same commands as ``reptile data ...``)."""
    parser = argparse.ArgumentParser(prog="python -m reptile_lib.data.commands")
    add_data_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
