"""`rp-data`: the data side of the toolkit, from official downloads to a source manifest."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.text import Text

from manifests.schema import DATASETS_DIR, SpecError, load_registry
from pipeline.summary import datasets_table, problems_table, scan_table

# wide tables when written to a file or CI log; the terminal's own width otherwise
console = Console(width=None if sys.stdout.isatty() else 160)

MAIN_EPILOG = """\
examples:
  rp-data datasets                                   # the registry: nine specs
  rp-data sample --out data/sample                   # write the embedded sample (8 official layouts)
  rp-data scan --dataset sample --root data/sample --probe
  rp-data scan --dataset hdtf --root /data/HDTF --out manifests/hdtf.parquet
"""


def _cmd_datasets(args: argparse.Namespace) -> int:
    registry = load_registry(args.registry)
    if args.name is None:
        console.print(datasets_table(registry))
    elif args.name in registry:
        console.print(Syntax(yaml.safe_dump(registry[args.name].model_dump(mode="json"), sort_keys=False), "yaml"))
    else:
        raise SpecError(f"unknown dataset {args.name!r}; the registry has: {', '.join(sorted(registry))}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from pipeline.sample import write_sample

    started = time.perf_counter()
    summary = write_sample(Path(args.out))
    console.print(
        f"wrote the sample to [bold]{args.out}[/]: {summary.files} files, {summary.bytes / 1e6:.1f} MB "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from pipeline.sources.scan import scan

    root = Path(args.root)
    if not root.is_dir():
        console.print(f"[red]error:[/] --root {root} is not a directory")
        return 2
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} items"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"scanning {args.dataset}", total=None)

        def on_item(stats) -> None:  # type: ignore[no-untyped-def]
            progress.update(task, advance=1, description=f"scanning {stats.dataset}")

        results = scan(
            args.dataset,
            root,
            out=Path(args.out) if args.out else None,
            probe_media=args.probe,
            workers=args.workers,
            on_item=on_item,
            check_faces=args.faces,
            registry=load_registry(args.registry),
        )
    console.print(scan_table(results))
    if any(r.problems for r in results):
        console.print(problems_table(results, limit=args.show_problems))
    if args.out:
        out = Path(args.out)
        console.print(f"manifest: {out}  problems: {out.with_name(out.stem + '.problems.parquet')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="rp-data",
        description="Turn official face-dataset downloads into RealPortrait training data.",
        epilog=MAIN_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument(
        "--registry",
        type=Path,
        default=DATASETS_DIR,
        metavar="DIR",
        help="folder of dataset specs (default: the packaged manifests/datasets)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    datasets = commands.add_parser(
        "datasets",
        help="list the dataset registry",
        formatter_class=formatter,
        description="Print every spec of manifests/datasets/ (validated) as a table, or one in full.",
        epilog="examples:\n  rp-data datasets\n  rp-data datasets hdtf",
    )
    datasets.add_argument("name", nargs="?", help="show this spec in full (with its defaults)")
    datasets.set_defaults(run=_cmd_datasets)

    sample = commands.add_parser(
        "sample",
        help="write the embedded sample dataset",
        formatter_class=formatter,
        description="Write a small deterministic dataset in the official layout of each of the eight\n"
        "datasets (DIR/vggface2, DIR/hdtf, ...), made from face photos that installed packages ship,\n"
        "with bad items planted on purpose. Same bytes on every run.",
        epilog="example:\n  rp-data sample --out data/sample",
    )
    sample.add_argument("--out", required=True, metavar="DIR", help="folder to write (created, files replaced)")
    sample.set_defaults(run=_cmd_sample)

    scan = commands.add_parser(
        "scan",
        help="read a dataset's official files into a source manifest",
        formatter_class=formatter,
        description="Read one dataset's official layout under --root, print counts (items, splits,\n"
        "identities, problems by reason) and optionally write the source manifest as parquet\n"
        "(plus <name>.problems.parquet listing every problem with file, line and reason).",
        epilog="examples:\n"
        "  rp-data scan --dataset vfhq --root /data/VFHQ --out vfhq.parquet\n"
        "  rp-data scan --dataset sample --root data/sample --probe --faces\n"
        "  rp-data scan --dataset hdtf --root ../shared/fixtures/hdtf_annotations",
    )
    scan.add_argument("--dataset", required=True, metavar="NAME", help="a registry name (see rp-data datasets)")
    scan.add_argument("--root", required=True, metavar="PATH", help="where the official download lies")
    scan.add_argument("--out", metavar="FILE.parquet", help="write the source manifest here")
    scan.add_argument(
        "--probe", action="store_true", help="open every media file to catch truncated or unreadable ones (slower)"
    )
    scan.add_argument(
        "--faces",
        action="store_true",
        help="look for exactly one prominent face in each item's middle frame (slower still)",
    )
    scan.add_argument("--workers", type=int, default=8, help="threads that open media with --probe (default 8)")
    scan.add_argument(
        "--show-problems",
        type=int,
        default=20,
        metavar="N",
        help="print at most N problems per dataset and reason (all are in the problems parquet)",
    )
    scan.set_defaults(run=_cmd_scan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SpecError as exc:
        console.print(Text("error: ", style="red") + Text(str(exc)))
        return 2


if __name__ == "__main__":
    sys.exit(main())
