"""`rp-data`: the data side of the toolkit, from official downloads to a source manifest."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.text import Text

from manifests.schema import DATASETS_DIR, DatasetSpec, SpecError, load_registry
from pipeline.runner import DEFAULT_MAX_ATTEMPTS, DEFAULT_WORKER_MEMORY_GIB
from pipeline.summary import datasets_table, problems_table, scan_table

# wide tables when written to a file or CI log; the terminal's own width otherwise
console = Console(width=None if sys.stdout.isatty() else 160)

MAIN_EPILOG = """\
examples:
  rp-data build --sample --out data/shards           # the main job, on the embedded sample
  rp-data build --source vfhq=/data/VFHQ --source hdtf=/data/HDTF --out /data/shards --workers 32
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


def _parse_source(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a number of `kind` above zero."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return parse


def _built_twice(names: list[tuple[str, str]], registry: dict[str, DatasetSpec]) -> str | None:
    """Why these (argument, dataset name) pairs would build a dataset twice, or None.

    A dataset given twice, or beside a composite spec that holds it (`sample` holds all eight), would put
    every one of its items into the plan twice: two manifest rows and two samples per item.
    """
    given: dict[str, str] = {}  # member dataset -> the argument that brings it
    for argument, name in names:
        spec = registry.get(name)
        for member in spec.members if spec is not None and spec.members else [name]:
            if member in given:
                first = given[member]
                twice = (
                    f"{argument} is given twice" if first == argument else f"{first} and {argument} both build {member}"
                )
                return f"{twice}: every item of {member} would be built twice; give each dataset once"
            given[member] = argument
    return None


def _cmd_build(args: argparse.Namespace) -> int:
    from pipeline.build import BuildError, build
    from pipeline.config import load_config
    from pipeline.recovery import WorkerError
    from pipeline.summary import build_table, recovery_line

    sources = list(args.source or [])
    names = [(f"--source {name}", name) for name, _ in sources] + ([("--sample", "sample")] if args.sample else [])
    twice = _built_twice(names, load_registry(args.registry))
    if twice:
        console.print(Text("error: ", style="red") + Text(twice))
        return 2
    if args.sample:
        from pipeline.sample import write_sample

        console.print(f"writing the embedded sample to {args.sample_dir}")
        write_sample(Path(args.sample_dir))
        sources.append(("sample", Path(args.sample_dir)))
    if not sources:
        console.print("[red]error:[/] give --source NAME=PATH (repeatable) or --sample")
        return 2
    cfg = load_config(args.config, args.set)
    started = time.perf_counter()
    with console.status("planning") as status:

        def on_progress(progress) -> None:  # type: ignore[no-untyped-def]
            status.update(progress.line())
            if not console.is_terminal:
                console.print(progress.line())

        try:
            result = build(
                sources,
                Path(args.out),
                cfg,
                workers=args.workers,
                ray_address=args.ray_address,
                max_attempts=args.max_attempts,
                worker_memory_gib=args.worker_memory,
                retry_failed=args.retry_failed,
                exclude_split=args.exclude_split,
                allow_fingerprint_change=args.allow_fingerprint_change,
                on_progress=on_progress,
            )
        except BuildError as exc:
            console.print(Text("error: ", style="red") + Text(str(exc)))
            return 2
        except WorkerError as exc:
            console.print(Text("error: ", style="red") + Text(str(exc)))
            return 1
    console.print(build_table(result.counts))
    ran = result.progress.done
    console.print(
        f"{ran} work shard(s) built, {result.skipped} already done, in {time.perf_counter() - started:.1f} s; "
        f"{recovery_line(result.progress)}; "
        f"manifest: {Path(args.out) / 'manifest.parquet'}; report: rp-data report {args.out}"
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import write_report

    try:
        page = write_report(Path(args.dir), out_html=args.out, samples=args.samples, seed=args.seed)
    except FileNotFoundError as exc:
        console.print(Text("error: ", style="red") + Text(str(exc)))
        return 2
    console.print(f"report: {page}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline.inspect_shard import inspect_shard, print_inspection

    try:
        result = inspect_shard(Path(args.shard), limit=args.limit)
    except FileNotFoundError as exc:
        console.print(Text("error: ", style="red") + Text(str(exc)))
        return 2
    print_inspection(result)  # plain text: problem descriptions contain brackets rich would eat
    return result.exit_code


def _split_roots(args: argparse.Namespace) -> dict[str, Path]:
    if args.sample:
        return {"vfhq": Path(args.sample) / "vfhq", "celebvhq": Path(args.sample) / "celebvhq"}
    if not (args.vfhq_root and args.celebvhq_root):
        raise SpecError("give --vfhq-root and --celebvhq-root, or --sample DIR")
    return {"vfhq": Path(args.vfhq_root), "celebvhq": Path(args.celebvhq_root)}


def _cmd_split(args: argparse.Namespace) -> int:
    import pandas as pd

    from pipeline import split as splits

    roots = _split_roots(args)
    if args.verify:
        mismatches = splits.verify_split(splits.load_split(Path(args.verify)), roots)
        for line in mismatches:
            console.print(Text(line))
        console.print(f"{args.verify}: " + (f"{len(mismatches)} mismatch(es)" if mismatches else "every clip matches"))
        return 1 if mismatches else 0
    if not args.out:
        raise SpecError("give --out FILE (or --verify FILE)")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise SpecError(f"{out} exists: a frozen split is the source of truth (use --force to replace it)")
    per_dataset = args.per_dataset or (splits.SAMPLE_PER_DATASET if args.sample else 50)
    thresholds = splits.SAMPLE_THRESHOLDS if args.sample else splits.DEFAULT_THRESHOLDS
    changes = {
        k: v
        for k, v in (
            ("vfhq_min_frames", args.vfhq_min_frames),
            ("celebvhq_min_seconds", args.celebvhq_min_seconds),
            ("min_crop_px", args.min_crop_px),
        )
        if v is not None
    }
    thresholds = thresholds.model_copy(update=changes)
    train_ids = {
        y
        for f in args.train_manifest or []
        for y in pd.read_parquet(f, columns=["youtube_id"]).youtube_id
        if isinstance(y, str)
    }
    split, problems = splits.split_from_roots(
        roots,
        per_dataset=per_dataset,
        thresholds=thresholds,
        train_youtube_ids=train_ids,
        check=args.check,
        seed=args.seed,
        registry=args.registry,
    )
    splits.write_split(split, out)
    counts = ", ".join(f"{d}: {sum(1 for c in split.clips if c.dataset == d)}" for d in splits.DATASETS)
    console.print(f"wrote {out}: {len(split.clips)} clips ({counts}), {len(split.pairs.pairs)} cross-identity pairs")
    for note in split.notes:
        console.print(Text(f"note: {note}"))
    skipped = Counter(skip.reason for skip in split.skipped)
    if skipped:
        console.print("skipped: " + ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items())))
    if problems:
        console.print(f"{len(problems)} annotation problem(s) while reading (see rp-data scan)")
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

    build = commands.add_parser(
        "build",
        help="build WebDataset training shards (the main job)",
        formatter_class=formatter,
        description="Scan each --source, plan deterministic work shards and run them on Ray: decode each\n"
        "frame once, cut scenes, track the main face, crop a stable 512x512 box per clip, extract\n"
        "landmarks and head pose, filter, encode H.264, and write WebDataset tars with a parquet\n"
        "manifest. Rerunning the same command resumes (finished work shards are skipped).",
        epilog="examples:\n"
        "  rp-data build --sample --out data/shards\n"
        "  rp-data build --source vfhq=/data/VFHQ --source celebvhq=/data/CelebV-HQ --out /data/shards \\\n"
        "      --workers 32 --exclude-split manifests/splits/paper.json\n"
        "  rp-data build --source hdtf=/data/HDTF --out /data/shards --retry-failed\n"
        "  rp-data build --source vfhq=/shared/VFHQ --out /shared/shards --ray-address 10.0.0.1:6379\n"
        "      (a cluster: every CPU of it works; sources and --out on a filesystem all nodes share)",
    )
    build.add_argument(
        "--source",
        action="append",
        type=_parse_source,
        metavar="NAME=PATH",
        help="a registry dataset and the folder of its official download (repeatable, once per dataset)",
    )
    build.add_argument("--sample", action="store_true", help="build the embedded sample (all eight datasets)")
    build.add_argument(
        "--sample-dir",
        default=".cache/sample",
        metavar="DIR",
        help="where --sample writes the sample (default .cache/sample)",
    )
    build.add_argument("--out", required=True, metavar="DIR", help="build directory (shards, manifest, report)")
    build.add_argument("--config", type=Path, metavar="FILE.yaml", help="build config (see pipeline/config.py)")
    build.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set crf=20 --set filters.max_abs_yaw=50",
    )
    build.add_argument(
        "--workers",
        type=_positive(int),
        metavar="N",
        help="Ray worker processes (default: with --ray-address every CPU of the cluster, "
        f"else this machine's CPU count, {os.cpu_count() or 1} here)",
    )
    build.add_argument(
        "--ray-address", metavar="HOST:PORT", help="join an existing Ray cluster instead of starting an embedded one"
    )
    build.add_argument(
        "--max-attempts",
        type=_positive(int),
        default=DEFAULT_MAX_ATTEMPTS,
        metavar="N",
        help="a work shard whose worker dies (out of memory, crash, lost node) is rebuilt on a fresh worker; "
        "an item that was running in N dead workers is recorded failed (worker_died) and the rest of its "
        f"shard is built (default {DEFAULT_MAX_ATTEMPTS})",
    )
    build.add_argument(
        "--worker-memory",
        type=_positive(float),
        default=DEFAULT_WORKER_MEMORY_GIB,
        metavar="GiB",
        help="memory each worker reserves with Ray, so a node runs only as many workers as it can hold "
        f"(default {DEFAULT_WORKER_MEMORY_GIB})",
    )
    build.add_argument("--retry-failed", action="store_true", help="reprocess only the items that failed")
    build.add_argument(
        "--exclude-split",
        type=Path,
        metavar="FILE",
        help="keep this evaluation split's YouTube ids and identities out of every shard",
    )
    build.add_argument(
        "--allow-fingerprint-change",
        action="store_true",
        help="resume a build directory made with another config (mixes outputs)",
    )
    build.set_defaults(run=_cmd_build)

    report = commands.add_parser(
        "report",
        help="one HTML page of plots and a contact sheet for a build",
        formatter_class=formatter,
        description="Write DIR/report/index.html: counts per dataset, status and reason; histograms of clip\n"
        "length, face size, head pose and blur; a contact sheet of random samples with landmarks drawn.",
        epilog="example:\n  rp-data report data/shards",
    )
    report.add_argument("dir", metavar="DIR", help="a build directory (rp-data build --out)")
    report.add_argument("--out", type=Path, metavar="FILE.html", help="where to write the page")
    report.add_argument("--samples", type=int, default=16, metavar="N", help="samples on the contact sheet")
    report.add_argument("--seed", type=int, default=0, help="which samples the contact sheet shows")
    report.set_defaults(run=_cmd_report)

    inspect = commands.add_parser(
        "inspect",
        help="list and check the samples of one shard",
        formatter_class=formatter,
        description="Print every sample of a WebDataset tar and check it against the shard contract:\n"
        "members present, json fields, mp4 512x512 with as many frames as json says, controls' shapes.\n"
        "Exits 1 when a check fails.",
        epilog="example:\n  rp-data inspect data/shards/shards/vfhq-00000-00.tar --limit 5",
    )
    inspect.add_argument("shard", metavar="SHARD.tar")
    inspect.add_argument("--limit", type=int, metavar="N", help="stop after N samples")
    inspect.set_defaults(run=_cmd_inspect)

    split = commands.add_parser(
        "split",
        help="choose (or verify) the frozen evaluation split",
        formatter_class=formatter,
        description="Choose the paper's test split (datasets.md §11): rank VFHQ test clips and CelebV-HQ clips\n"
        "by sha256('facetest-v1:<dataset>:<id>'), keep those the annotations allow (VFHQ P0 and >= 200\n"
        "frames; CelebV-HQ >= 5 s, no emotion segments, not blurry; one clip per YouTube id; no id in both\n"
        "datasets or in the training manifests), walk down the ranking until N per dataset pass the check,\n"
        "and freeze them with media sha256s, every skipped id with its reason, and seeded cross-identity\n"
        "pairs. The check 'faces' (default) decodes each clip with the build's own detector, tracker, crop and\n"
        "scene-cut code: one prominent face over the clip, a crop >= 512 px, no cut; 'probe' only opens it.\n"
        "The file is the source of truth afterwards: verify it, never re-select.",
        epilog="examples:\n"
        "  rp-data split --vfhq-root /data/VFHQ --celebvhq-root /data/CelebV-HQ \\\n"
        "      --train-manifest hdtf.parquet --out manifests/splits/paper.json\n"
        "  rp-data split --sample .cache/sample --out /tmp/sample-split.json\n"
        "  rp-data split --verify manifests/splits/paper.json --vfhq-root /data/VFHQ --celebvhq-root /data/CelebV-HQ\n"
        "  rp-data build ... --exclude-split manifests/splits/paper.json",
    )
    split.add_argument("--vfhq-root", metavar="PATH")
    split.add_argument("--celebvhq-root", metavar="PATH")
    split.add_argument("--sample", metavar="DIR", help="use the embedded sample (thresholds 20 frames / 1 s, N=2)")
    split.add_argument("--out", metavar="FILE", help="write the split here (refused if it exists, unless --force)")
    split.add_argument("--force", action="store_true")
    split.add_argument("--per-dataset", type=int, metavar="N", help="clips per dataset (default 50)")
    split.add_argument("--vfhq-min-frames", type=int, metavar="N", help="minimum F range of a VFHQ clip (200)")
    split.add_argument("--celebvhq-min-seconds", type=float, metavar="S", help="minimum CelebV-HQ clip length (5)")
    split.add_argument(
        "--train-manifest",
        action="append",
        metavar="FILE.parquet",
        help="an rp-data scan manifest whose YouTube ids must not be tested (repeatable)",
    )
    split.add_argument("--seed", type=int, default=0, help="seed of the cross-identity pairing")
    split.add_argument(
        "--check",
        choices=("faces", "probe"),
        default="faces",
        help="faces: one prominent face, crop >= --min-crop-px, no scene cut; probe: the media open",
    )
    split.add_argument(
        "--min-crop-px", type=int, metavar="N", help="smallest crop of the faces check (512; --sample: 128)"
    )
    split.add_argument("--verify", metavar="FILE", help="re-hash a frozen split's media and list mismatches")
    split.set_defaults(run=_cmd_split)

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
        "  rp-data scan --dataset hdtf --root /data/HDTF --show-problems 100",
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
