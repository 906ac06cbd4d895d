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

from manifests.folder_spec import FOLDER_PREFIX, resolve_sources
from manifests.schema import USER_REGISTRY_ENV, DatasetSpec, SpecError, load_specs, user_registry_dir
from pipeline.build_lock import STALE_AFTER_S
from pipeline.capacity import usable_cpus
from pipeline.cli_help import HelpFormatter
from pipeline.faces.quiet import add_verbose_argument, quiet_native_logs
from pipeline.runner import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PLACEMENT_TIMEOUT_S,
    DEFAULT_WORKER_MEMORY_GIB,
    PLACEMENT_GRACE_S,
)
from pipeline.sources.scan import DatasetScan, NoItemsError
from pipeline.summary import datasets_table, problems_table, scan_table

# wide tables when written to a file or CI log; the terminal's own width otherwise
console = Console(width=None if sys.stdout.isatty() else 160)
INSPECT_PREVIEW = 3  # samples `rp-data inspect DIR` checks of the first tar when told nothing else

# Every example below runs as written once the dataset paths point at real downloads (or at the folders of
# `rp-data sample --out DIR`: /data/VFHQ -> DIR/vfhq, ...), /data/shards at a build's --out and
# manifests/splits/paper.json at a frozen split; outputs go under out/.
MAIN_EPILOG = """\
examples:
  rp-data build --sample --out out/shards            # the main job, on the embedded sample
  rp-data build --source vfhq=/data/VFHQ --source hdtf=/data/HDTF --out out/vfhq-hdtf --workers 32
  rp-data report /data/shards                        # one HTML page: counts, plots, a contact sheet
  rp-data inspect /data/shards                       # a build's tars with their counts; first samples checked
  rp-data datasets                                   # the registry: nine specs
  rp-data sample --out out/sample                    # write the embedded sample (8 official layouts)
  rp-data scan --dataset hdtf --root /data/HDTF --out out/hdtf.parquet
"""

BUILD_EPILOG = """\
examples:
  rp-data build --sample --out out/shards
  rp-data build --source vfhq=/data/VFHQ --source celebvhq=/data/CelebV-HQ --out out/videos --workers 32
  rp-data build --source vfhq=/data/VFHQ --out out/vfhq-heldout --exclude-split manifests/splits/paper.json
  rp-data build --source hdtf=/data/HDTF --out out/hdtf                   # run it again as is to resume
  rp-data build --source hdtf=/data/HDTF --out out/hdtf --retry-failed    # then rebuild what failed
  rp-data build --source vfhq=/data/VFHQ --out out/vfhq --ray-address HEAD:6379
  # on a cluster every CPU of it works; the sources and --out must lie on a filesystem all nodes share
"""

SPLIT_EPILOG = """\
examples:
  rp-data split --vfhq-root /data/VFHQ --celebvhq-root /data/CelebV-HQ --out out/split.json
  rp-data split --sample out/sample --out out/sample-split.json     # the sample, written to out/sample if missing
  rp-data split --verify manifests/splits/paper.json --vfhq-root /data/VFHQ --celebvhq-root /data/CelebV-HQ
  rp-data build --source vfhq=/data/VFHQ --out out/vfhq-heldout --exclude-split manifests/splits/paper.json
"""

INSPECT_EPILOG = f"""\
examples:
  rp-data inspect /data/shards                             # its tars and counts; {INSPECT_PREVIEW} samples checked
  rp-data inspect /data/shards --shard vfhq-00000-00.tar   # one tar, every sample
  rp-data inspect /data/shards --all                       # every tar (prints only what fails)
  rp-data inspect /data/shards/shards/vfhq-00000-00.tar --limit 5
"""

SCAN_EPILOG = """\
examples:
  rp-data scan --dataset vfhq --root /data/VFHQ --out out/vfhq.parquet
  rp-data scan --dataset hdtf --root /data/HDTF --probe --faces      # open every media file, look for the face
  rp-data scan --dataset mead --root /data/MEAD --show-problems 100
"""


def _cmd_datasets(args: argparse.Namespace) -> int:
    if args.name == "new":
        return _new_folder_source(args)
    if args.name == "folder":
        from pipeline.sources.folder import folder_help

        console.print(Text(folder_help()))
        return 0
    registry = load_specs(args.registry)
    if args.name is None:
        console.print(datasets_table(registry))
    elif args.name in registry:
        console.print(Syntax(yaml.safe_dump(registry[args.name].model_dump(mode="json"), sort_keys=False), "yaml"))
    else:
        raise SpecError(f"unknown dataset {args.name!r}; the registry has: {', '.join(sorted(registry))}")
    return 0


def _new_folder_source(args: argparse.Namespace) -> int:
    """`rp-data datasets new NAME --root PATH`: a folder source's spec in the user registry, once the root
    is shown to hold media (an empty or mistyped root is refused, as a build's would be)."""
    from manifests.folder_spec import folder_spec, write_user_spec
    from pipeline.sources.scan import first_items, refuse_empty

    if not args.source_name or not args.root:
        raise SpecError("give a name and a root: rp-data datasets new NAME --root PATH")
    root = Path(args.root)
    if not root.is_dir():
        raise SpecError(f"--root {root}: not a directory")
    spec = folder_spec(args.source_name, root)
    registry = {**load_specs(args.registry), spec.name: spec}
    refuse_empty(first_items(spec.name, root, registry), registry, prefix=f"--root {root}: ")
    path = write_user_spec(spec, args.registry or user_registry_dir(), replace=args.force)
    console.print(
        Text(
            f"wrote {path}: edit it as an official spec (defaults, licence, options)\n"
            f"next: rp-data scan --dataset {spec.name} --root {root}\n"
            f"      rp-data build --source {spec.name} --out out/{spec.name}"
        )
    )
    return 0


def _parse_source(text: str) -> tuple[str, str | None]:
    name, sep, path = text.partition("=")
    if not name or (sep and not path) or (sep and path == FOLDER_PREFIX):
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, NAME=folder:PATH or NAME, got {text!r}")
    return name, path if sep else None


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


def _error(message: str) -> None:
    console.print(Text("error: ", style="red") + Text(message))  # Text: paths and details may hold [brackets]


def _in_folder(folder: str, name: str) -> str:
    """A file of a build folder as the user named the folder (a local path or a URL)."""
    from pipeline.storage import is_url

    return f"{folder.rstrip('/')}/{name}" if is_url(folder) else str(Path(folder) / name)


def _cmd_build(args: argparse.Namespace) -> int:
    from pipeline.build import BuildError, build
    from pipeline.config import load_config
    from pipeline.recovery import StorageError, WorkerError
    from pipeline.summary import build_table, recovery_line

    registry = load_specs(args.registry)
    sources = resolve_sources(list(args.source or []), registry)
    names = [(f"--source {name}", name) for name, _ in sources] + ([("--sample", "sample")] if args.sample else [])
    twice = _built_twice(names, registry)
    if twice:
        _error(twice)
        return 2
    if args.sample:
        from pipeline.sample import write_sample

        console.print(f"writing the embedded sample to {args.sample_dir}")
        write_sample(Path(args.sample_dir))
        sources.append(("sample", Path(args.sample_dir)))
    if not sources:
        _error("give --source NAME=PATH (repeatable) or --sample")
        return 2
    cfg = load_config(args.config, args.set)
    started = time.perf_counter()
    with console.status("checking the sources") as status:

        def on_progress(progress) -> None:  # type: ignore[no-untyped-def]
            status.update(progress.line())
            if not console.is_terminal:
                console.print(progress.line())

        try:
            result = build(
                sources,
                args.out,
                cfg,
                workers=args.workers,
                ray_address=args.ray_address,
                max_attempts=args.max_attempts,
                worker_memory_gib=args.worker_memory,
                placement_timeout_s=args.placement_timeout,
                retry_failed=args.retry_failed,
                exclude_split=args.exclude_split,
                allow_fingerprint_change=args.allow_fingerprint_change,
                force_unlock=args.force_unlock,
                on_progress=on_progress,
                on_status=status.update,
                registry=registry,
            )
        except BuildError as exc:
            _error(str(exc))
            return 2
        except (WorkerError, StorageError) as exc:
            _error(str(exc))
            return 1
    console.print(build_table(result.counts))
    for note in result.notes:
        console.print(Text(f"note: {note}"))
    ran = result.progress.done
    console.print(
        f"{ran} work shard(s) built, {result.skipped} already done, in {time.perf_counter() - started:.1f} s; "
        f"{recovery_line(result.progress)}; "
        f"manifest: {_in_folder(args.out, 'manifest.parquet')}; report: rp-data report {args.out}"
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import write_report

    try:
        page = write_report(args.dir, out_html=args.out, samples=args.samples, seed=args.seed)
    except FileNotFoundError as exc:
        _error(str(exc))
        return 2
    console.print(f"report: {page}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline.inspect_shard import inspect_shard, print_inspection
    from pipeline.storage import Store, location

    path = location(args.path)
    try:
        if Store.at(path).is_folder():
            return _inspect_build(path, args)
        if args.shard or args.all:
            raise SpecError(f"--shard and --all choose tars of a build folder; {path} is one tar")
        result = inspect_shard(path, limit=args.limit)
    except FileNotFoundError as exc:
        _error(str(exc))
        return 2
    print_inspection(result)  # plain text: problem descriptions contain brackets rich would eat
    return result.exit_code


def _inspect_build(root: Path | str, args: argparse.Namespace) -> int:
    """Lists the build's committed tars, then checks the first samples of the first one, one named tar
    (--shard) or all of them (--all). Exits 1 when a committed tar is missing or a check fails."""
    from pipeline.inspect_shard import inspect_shard, list_build, print_inspection, print_listing

    listing = list_build(root)
    print_listing(listing)
    present = [tar for tar in listing.tars if tar.size is not None]
    if args.shard:
        chosen, limit = [listing.find(args.shard)], args.limit
    elif args.all:
        chosen, limit = present, args.limit
    else:
        chosen, limit = present[:1], args.limit or INSPECT_PREVIEW
    if not chosen:
        print("no committed tar on disk: nothing to check")
        return 1
    if not (args.shard or args.all):
        print(f"checking the first {limit} sample(s) of {chosen[0].name} (--shard NAME: a whole tar, --all: all)")
    results = [inspect_shard(tar.path, limit=limit) for tar in chosen]
    for result in results:
        print_inspection(result, failed_only=args.all)
    if args.all:
        failed = sum(not result.ok for result in results)
        print(f"checked {len(results)} tar(s): {failed} with problems, {len(listing.missing)} missing")
    return max([1 if listing.missing else 0, *(result.exit_code for result in results)])


def _split_roots(args: argparse.Namespace) -> dict[str, tuple[str, Path]]:
    """dataset -> (the argument that gave its root, the root); --sample writes the sample if it is not there."""
    if args.sample:
        sample = Path(args.sample)
        if not sample.exists():
            from pipeline.sample import write_sample

            console.print(f"writing the embedded sample to {sample}")
            write_sample(sample)
        return {name: (f"--sample {sample}", sample / name) for name in ("vfhq", "celebvhq")}
    if not (args.vfhq_root and args.celebvhq_root):
        raise SpecError("give --vfhq-root and --celebvhq-root, or --sample DIR")
    return {"vfhq": ("--vfhq-root", Path(args.vfhq_root)), "celebvhq": ("--celebvhq-root", Path(args.celebvhq_root))}


def _verify_split(path: Path, roots: dict[str, Path]) -> int:
    """`rp-data split --verify FILE`: every mismatch printed; exit 1 when there is one."""
    from pipeline import split as splits

    mismatches = splits.verify_split(splits.load_split(path), roots)
    for line in mismatches:
        console.print(Text(line))
    console.print(f"{path}: " + (f"{len(mismatches)} mismatch(es)" if mismatches else "every clip matches"))
    return 1 if mismatches else 0


def _split_out(args: argparse.Namespace) -> Path:
    """Where a new split goes: a frozen split already there is replaced only with --force."""
    if not args.out:
        raise SpecError("give --out FILE (or --verify FILE)")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise SpecError(f"{out} exists: a frozen split is the source of truth (use --force to replace it)")
    return out


def _folder_split(args: argparse.Namespace) -> int:
    """`rp-data split --folder NAME=PATH`: a folder source's identity-disjoint test split (pipeline/split_folder.py)."""
    from pipeline import split as splits
    from pipeline.sources.scan import first_items, refuse_empty
    from pipeline.split_folder import folder_split

    registry = load_specs(args.registry)
    [(name, root)] = resolve_sources([args.folder], registry)
    if args.verify:
        return _verify_split(Path(args.verify), {name: root})
    out = _split_out(args)
    refuse_empty(first_items(name, root, registry), registry, prefix=f"--folder {name}={root}: ")
    if args.check == "faces":
        quiet_native_logs(args.verbose)
    given = {"min_crop_px": args.min_crop_px, "celebvhq_min_seconds": args.celebvhq_min_seconds}
    changes = {name: value for name, value in given.items() if value}
    split, problems = folder_split(
        name,
        root,
        registry,
        per_dataset=args.per_dataset or 50,
        thresholds=splits.DEFAULT_THRESHOLDS.model_copy(update=changes),
        check=args.check,
        seed=args.seed,
    )
    splits.write_split(split, out)
    console.print(f"wrote {out}: {len(split.clips)} clips of {name}, {len(split.pairs.pairs)} cross-identity pairs")
    for note in split.notes:
        console.print(Text(f"note: {note}"))
    skipped = Counter(skip.reason for skip in split.skipped)
    if skipped:
        console.print("skipped: " + ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items())))
    if problems:
        console.print(f"{len(problems)} problem(s) while reading (see rp-data scan)")
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    import pandas as pd

    from pipeline import split as splits
    from pipeline.sources.scan import first_items, refuse_empty

    if args.folder:
        return _folder_split(args)
    given = _split_roots(args)
    roots = {name: root for name, (_, root) in given.items()}
    if args.verify:
        return _verify_split(Path(args.verify), roots)
    out = _split_out(args)
    registry = load_specs(args.registry)
    for name, (argument, root) in given.items():
        refuse_empty(first_items(name, root, registry), registry, prefix=f"{argument} {root}: ")
    if args.check == "faces":
        quiet_native_logs(args.verbose)
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
        registry=registry,
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


def _print_scan(results: list[DatasetScan], show_problems: int) -> None:
    console.print(scan_table(results))
    if any(r.problems for r in results):
        console.print(problems_table(results, limit=show_problems))


def _cmd_scan(args: argparse.Namespace) -> int:
    registry = load_specs(args.registry)
    [(_, root)] = resolve_sources([(args.dataset, args.root)], registry)
    if not root.is_dir():
        _error(f"--root {root} is not a directory")
        return 2
    if args.faces:
        quiet_native_logs(args.verbose)
    try:
        results = _scan_with_progress(args, root, registry)
    except NoItemsError as exc:
        _print_scan(exc.scans, args.show_problems)
        _error(str(exc) + (f"\nnothing was written to {args.out}" if args.out else ""))
        return 2
    _print_scan(results, args.show_problems)
    if args.out:
        out = Path(args.out)
        console.print(f"manifest: {out}  problems: {out.with_name(out.stem + '.problems.parquet')}")
    return 0


def _scan_with_progress(args: argparse.Namespace, root: Path, registry: dict[str, DatasetSpec]) -> list[DatasetScan]:
    """The scan, with a spinner naming the dataset being read and how many of its items it has read."""
    from pipeline.sources.scan import scan

    doing = "checking faces in" if args.faces else "probing" if args.probe else "scanning"
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{doing} {args.dataset}", total=None)

        def on_item(stats: DatasetScan) -> None:
            progress.update(task, description=f"{doing} {stats.dataset}: {stats.items} items")

        return scan(
            args.dataset,
            root,
            out=Path(args.out) if args.out else None,
            probe_media=args.probe,
            workers=args.workers,
            on_item=on_item,
            check_faces=args.faces,
            registry=registry,
        )


def _add_build(commands: argparse._SubParsersAction) -> None:
    build = commands.add_parser(
        "build",
        help="build WebDataset training shards (the main job)",
        formatter_class=HelpFormatter,
        description="Scan each --source, plan deterministic work shards and run them on Ray: decode each\n"
        "frame once, cut scenes, track the main face, crop a stable 512x512 box per clip, extract\n"
        "landmarks and head pose, filter, encode H.264, and write WebDataset tars with a parquet\n"
        "manifest. Rerunning the same command resumes (finished work shards are skipped).\n"
        "A source in which no item is found is refused before anything is written.",
        epilog=BUILD_EPILOG,
    )
    build.add_argument(
        "--source",
        action="append",
        type=_parse_source,
        metavar="NAME=PATH",
        help="a registry dataset (rp-data datasets) and the folder of its official download; NAME=folder:PATH "
        "for any folder of your own videos and photos (NAME: lowercase letters, digits, _), or NAME alone for a "
        "folder source made by `rp-data datasets new`; repeatable, once per dataset (default: none; give "
        "--source, --sample or both)",
    )
    build.add_argument(
        "--sample", action="store_true", help="also build the embedded sample (all eight datasets), written first"
    )
    build.add_argument("--sample-dir", default=".cache/sample", metavar="DIR", help="where --sample writes the sample")
    build.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="build folder (shards/, manifest.parquet, build.json): a local folder or an fsspec URL such as "
        "s3://bucket/run (every node must reach it); the same command on it again resumes",
    )
    build.add_argument(
        "--config",
        type=Path,
        metavar="FILE.yaml",
        help="build config, the fields of pipeline/config.py (default: that file's defaults)",
    )
    build.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config field, repeatable, e.g. --set crf=20 --set filters.max_abs_yaw=50 (default: none)",
    )
    build.add_argument(
        "--workers",
        type=_positive(int),
        metavar="N",
        help="Ray worker processes (default: as many as the nodes hold at once, per node the smaller of its "
        "CPUs and its memory over --worker-memory; without --ray-address the CPUs this process may use "
        f"(affinity and cgroup quota), {usable_cpus()} here)",
    )
    build.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="join an existing Ray cluster (default: start an embedded Ray on this machine, bound to 127.0.0.1)",
    )
    build.add_argument(
        "--max-attempts",
        type=_positive(int),
        default=DEFAULT_MAX_ATTEMPTS,
        metavar="N",
        help="a work shard whose worker dies (out of memory, crash, lost node) is rebuilt on a fresh worker; "
        "an item that was running in N dead workers is recorded failed (worker_died) and the rest of its "
        "shard is built. A shard whose files cannot be stored (disk full, I/O error) is retried on another "
        "worker; after N such attempts the build stops (exit 1) and a rerun resumes",
    )
    build.add_argument(
        "--worker-memory",
        type=_positive(float),
        default=DEFAULT_WORKER_MEMORY_GIB,
        metavar="GiB",
        help="memory each worker reserves with Ray, so a node runs only as many workers as it can hold; "
        "a cluster where no node has this much (and a CPU) is refused at once",
    )
    build.add_argument(
        "--placement-timeout",
        type=_positive(float),
        default=DEFAULT_PLACEMENT_TIMEOUT_S,
        metavar="SECONDS",
        help="how long the build may go without a started worker (every one waiting for a node with a free "
        f"CPU and --worker-memory) before it stops with exit 1; after {PLACEMENT_GRACE_S:.0f} s (or half this) "
        "the progress line says what a worker needs and what is free. A rerun resumes",
    )
    build.add_argument(
        "--retry-failed",
        action="store_true",
        help="rebuild only the items whose latest attempt failed, in new work shards beside the others",
    )
    build.add_argument(
        "--exclude-split",
        type=Path,
        metavar="FILE",
        help="keep this frozen evaluation split's YouTube ids and identities out of every shard "
        "(default: nothing held out)",
    )
    build.add_argument(
        "--allow-fingerprint-change",
        action="store_true",
        help="resume a build folder made with another config or pipeline version (mixes their outputs)",
    )
    build.add_argument(
        "--force-unlock",
        action="store_true",
        help="take over the --out lock of a build that died: its process is gone from this host, or its lock "
        f"has had no heartbeat for {STALE_AFTER_S / 60:.0f} min; a live build's lock is never taken "
        "(one build per --out; a second is refused)",
    )
    build.set_defaults(run=_cmd_build)


def _add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="one HTML page of plots and a contact sheet for a build",
        formatter_class=HelpFormatter,
        description="Write DIR/report/index.html: counts per dataset, status and reason; histograms of clip\n"
        "length, face size, head pose and blur; a contact sheet of random samples with landmarks drawn.\n"
        "DIR may be an fsspec URL (s3://bucket/run): the page is then written to a local folder,\n"
        "./NAME-report/ by default (NAME: the URL's last part).",
        epilog="examples:\n  rp-data report /data/shards\n"
        "  rp-data report /data/shards --out out/report/index.html --samples 32 --seed 1\n",
    )
    report.add_argument(
        "dir",
        metavar="DIR",
        help="a build folder (the --out of rp-data build) or an fsspec URL such as s3://bucket/run",
    )
    report.add_argument(
        "--out",
        type=Path,
        metavar="FILE.html",
        help="where to write the page (a local file); its PNGs go beside it (default: DIR/report/index.html, "
        "or ./NAME-report/index.html for a build at a URL)",
    )
    report.add_argument("--samples", type=int, default=16, metavar="N", help="samples on the contact sheet")
    report.add_argument("--seed", type=int, default=0, metavar="N", help="which random samples the contact sheet shows")
    report.set_defaults(run=_cmd_report)


def _add_inspect(commands: argparse._SubParsersAction) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="list a build's shards and check their samples",
        formatter_class=HelpFormatter,
        description="Given a build folder (the --out of rp-data build): list its committed tars with their sample\n"
        f"counts, then check the first {INSPECT_PREVIEW} samples of the first tar, one tar (--shard) or every tar"
        " (--all).\nGiven one .tar: check every sample of it. A check reads the tar as training does and holds each\n"
        "sample to the shard contract: members present, json fields, mp4 512x512 with as many frames as json\n"
        "says, controls' shapes and values. Exits 1 when a check fails or a committed tar is missing.",
        epilog=INSPECT_EPILOG,
    )
    inspect.add_argument(
        "path",
        metavar="DIR|SHARD.tar",
        help="a build folder or one tar of it, local or an fsspec URL such as s3://bucket/run",
    )
    choice = inspect.add_mutually_exclusive_group()
    choice.add_argument(
        "--shard",
        metavar="NAME",
        help="with a build folder: check this tar whole, named as the listing names it "
        f"(default: the first {INSPECT_PREVIEW} samples of the first tar)",
    )
    choice.add_argument(
        "--all", action="store_true", help="with a build folder: check every committed tar, printing what fails"
    )
    inspect.add_argument(
        "--limit",
        type=_positive(int),
        metavar="N",
        help="check at most N samples per tar (default: every sample; "
        f"{INSPECT_PREVIEW} when a build folder is given without --shard or --all)",
    )
    inspect.set_defaults(run=_cmd_inspect)


def _add_split(commands: argparse._SubParsersAction) -> None:
    split = commands.add_parser(
        "split",
        help="choose (or verify) the frozen evaluation split",
        formatter_class=HelpFormatter,
        description="Choose the paper's test split: rank VFHQ test clips and CelebV-HQ clips\n"
        "by sha256('facetest-v1:<dataset>:<id>'), keep those the annotations allow (VFHQ P0 and >= 200\n"
        "frames; CelebV-HQ >= 5 s, no emotion segments, not blurry; one clip per YouTube id; no id in both\n"
        "datasets or in the training manifests), walk down the ranking until N per dataset pass the check,\n"
        "and freeze them with media sha256s, every skipped id with its reason, and seeded cross-identity\n"
        "pairs. The check 'faces' (default) decodes each clip with the build's own detector, tracker, crop and\n"
        "scene-cut code: one prominent face over the clip, a crop >= 512 px, no cut; 'probe' only opens it.\n"
        "The file is the source of truth afterwards: verify it, never re-select.",
        epilog=SPLIT_EPILOG,
    )
    split.add_argument(
        "--vfhq-root", metavar="PATH", help="VFHQ's official download (default: none; give both roots, or --sample)"
    )
    split.add_argument(
        "--celebvhq-root",
        metavar="PATH",
        help="CelebV-HQ's official download (default: none; give both roots, or --sample)",
    )
    split.add_argument(
        "--sample",
        metavar="DIR",
        help="instead of the roots, the embedded sample at DIR (written there if DIR does not exist), with its "
        "small defaults: 2 clips per dataset, 20 frames, 1 s, 128 px (default: off)",
    )
    split.add_argument(
        "--folder",
        type=_parse_source,
        metavar="NAME=folder:PATH",
        help="instead of VFHQ and CelebV-HQ, a folder source of your own footage (as --source of build takes it): "
        "one clip per identity, its sidecar's test rows if any, so a build with --exclude-split holds those "
        "identities out (default: none)",
    )
    split.add_argument(
        "--out",
        metavar="FILE",
        help="write the split here; refused if it exists, unless --force (default: none; needed unless --verify)",
    )
    split.add_argument(
        "--force", action="store_true", help="replace an existing --out (only to redraw a split on purpose)"
    )
    split.add_argument(
        "--per-dataset", type=_positive(int), metavar="N", help="clips per dataset (default: 50; with --sample 2)"
    )
    split.add_argument(
        "--vfhq-min-frames",
        type=_positive(int),
        metavar="N",
        help="minimum F range of a VFHQ clip (default: 200; with --sample 20)",
    )
    split.add_argument(
        "--celebvhq-min-seconds",
        type=_positive(float),
        metavar="S",
        help="minimum CelebV-HQ clip length in seconds, and of a --folder source's clips (default: 5; with --sample 1)",
    )
    split.add_argument(
        "--train-manifest",
        action="append",
        metavar="FILE.parquet",
        help="an rp-data scan manifest whose YouTube ids must not be tested; repeatable (default: none)",
    )
    split.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the cross-identity pairing")
    split.add_argument(
        "--check",
        choices=("faces", "probe"),
        default="faces",
        help="faces: one prominent face, crop >= --min-crop-px, no scene cut; probe: the media open",
    )
    split.add_argument(
        "--min-crop-px",
        type=_positive(int),
        metavar="N",
        help="smallest crop of the faces check (default: 512; with --sample 128)",
    )
    split.add_argument(
        "--verify",
        metavar="FILE",
        help="instead of choosing: re-hash a frozen split's media under the roots, list mismatches, exit 1 if any "
        "(default: choose a new split)",
    )
    add_verbose_argument(split)
    split.set_defaults(run=_cmd_split)


def _add_datasets(commands: argparse._SubParsersAction) -> None:
    datasets = commands.add_parser(
        "datasets",
        help="list the dataset registry; add a folder of your own footage",
        formatter_class=HelpFormatter,
        description="Print every spec of the registry (manifests/datasets/ and your own, validated) as a table,\n"
        "or one in full: where its official download lands, which annotation files hold what, its licence\n"
        "and defaults. `datasets new NAME --root PATH` writes the spec of a folder source (any folder of\n"
        "your own videos and photos) into your registry folder (--registry); `datasets folder` prints\n"
        "what a folder source reads and the schema of its optional sidecar.",
        epilog="examples:\n  rp-data datasets\n  rp-data datasets hdtf\n  rp-data datasets folder\n",
    )
    datasets.add_argument(
        "name",
        nargs="?",
        help="show this spec in full, with its defaults; or `new` (with NAME and --root) or `folder` "
        "(default: list every spec)",
    )
    datasets.add_argument(
        "source_name",
        nargs="?",
        metavar="NAME",
        help="with `new`: the folder source's name, lowercase letters, digits and underscores (default: none)",
    )
    datasets.add_argument("--root", metavar="PATH", help="with `new`: the folder of your footage (default: none)")
    datasets.add_argument("--force", action="store_true", help="with `new`: replace an existing spec of that name")
    datasets.set_defaults(run=_cmd_datasets)


def _add_sample(commands: argparse._SubParsersAction) -> None:
    sample = commands.add_parser(
        "sample",
        help="write the embedded sample dataset",
        formatter_class=HelpFormatter,
        description="Write a small deterministic dataset in the official layout of each of the eight\n"
        "datasets (DIR/vggface2, DIR/hdtf, ...), made from face photos that installed packages ship,\n"
        "with bad items planted on purpose. Same bytes on every run.",
        epilog="example:\n  rp-data sample --out out/sample\n",
    )
    sample.add_argument("--out", required=True, metavar="DIR", help="folder to write (created, files replaced)")
    sample.set_defaults(run=_cmd_sample)


def _add_scan(commands: argparse._SubParsersAction) -> None:
    scan = commands.add_parser(
        "scan",
        help="read a dataset's official files into a source manifest",
        formatter_class=HelpFormatter,
        description="Read one dataset's official layout under --root, print counts (items, splits,\n"
        "identities, problems by reason) and optionally write the source manifest as parquet\n"
        "(plus <name>.problems.parquet listing every problem with file, line and reason).\n"
        "A root in which no item is found is an error naming the files looked for (nothing is written).",
        epilog=SCAN_EPILOG,
    )
    scan.add_argument("--dataset", required=True, metavar="NAME", help="a registry name (see rp-data datasets)")
    scan.add_argument("--root", required=True, metavar="PATH", help="where the official download lies")
    scan.add_argument(
        "--out", metavar="FILE.parquet", help="write the source manifest here (default: print the counts only)"
    )
    scan.add_argument(
        "--probe", action="store_true", help="open every media file to catch truncated or unreadable ones (slower)"
    )
    scan.add_argument(
        "--faces",
        action="store_true",
        help="look for exactly one prominent face in each item's middle frame (slower still)",
    )
    scan.add_argument(
        "--workers", type=_positive(int), default=8, metavar="N", help="threads that open media with --probe"
    )
    scan.add_argument(
        "--show-problems",
        type=int,
        default=20,
        metavar="N",
        help="print at most N problems per dataset and reason (all are in the problems parquet)",
    )
    add_verbose_argument(scan, "with --faces")
    scan.set_defaults(run=_cmd_scan)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rp-data",
        description="Turn official face-dataset downloads into RealPortrait training data.",
        epilog=MAIN_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--registry",
        type=Path,
        metavar="DIR",
        help="folder of your own dataset specs, given before the command: they join the official ones "
        "(manifests/datasets), a spec of an official name replacing it, and `datasets new` writes there "
        f"(default: ${USER_REGISTRY_ENV}, else {user_registry_dir()})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_build, _add_report, _add_inspect, _add_split, _add_datasets, _add_sample, _add_scan):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
        sys.stdout.flush()  # a reader gone before the last buffered lines is found here, not at exit
        return code
    except (SpecError, NoItemsError) as exc:
        _error(str(exc))
        return 2
    except BrokenPipeError:  # `rp-data inspect ... | head`: the reader has what it wanted; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would fail
        return 141  # 128 + SIGPIPE, as a shell tool ends when its reader goes away


if __name__ == "__main__":
    sys.exit(main())
