"""What `rp-eval` checks before it loads anything: every path and value of the command line.

Loading the face models, the metric networks and a checkpoint takes seconds to minutes; a wrong path found
after that, or a dataset root that holds none of the split's clips (every task would fail, one by one),
wastes the user's time. Each problem is one line naming the argument and the path (`ArgumentProblem`,
exit code 2 like argparse's own errors). Nothing here imports torch's model code, diffusers or mediapipe.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.split import Split

# What `--data-root DIR` stands for: DIR/<dataset> for the evaluation split's datasets (the sample's layout)
DATA_ROOT_DATASETS = ("vfhq", "celebvhq")
OURS = "ours"
BUILT_IN = (OURS, "source-copy", "landmark-warp", "driving-copy")


class ArgumentProblem(ValueError):
    """A command-line argument that cannot work; the message names it and its value."""


def existing_file(flag: str, path: Path) -> Path:
    if not path.is_file():
        raise ArgumentProblem(
            f"argument {flag}: {path}: " + ("a folder, not a file" if path.is_dir() else "no such file")
        )
    return path


def existing_folder(flag: str, path: Path) -> Path:
    if not path.is_dir():
        raise ArgumentProblem(
            f"argument {flag}: {path}: " + ("a file, not a folder" if path.exists() else "no such folder")
        )
    return path


def writable_folder(flag: str, path: Path) -> Path:
    """A folder to write into: absent (it is created) or a folder."""
    if path.exists() and not path.is_dir():
        raise ArgumentProblem(f"argument {flag}: {path} is a file; give a folder to write into")
    return path


def dataset_roots(values: list[str], data_root: Path | None, split: Split) -> dict[str, Path]:
    """`--root DATASET=DIR` (and `--data-root`) for every dataset of the split, each holding its clips.

    A root that holds none of its dataset's clips is refused here (a wrong folder, or a dataset's parent
    folder); one that misses some of them is accepted, and those tasks fail with their reason in the run.
    """
    roots: dict[str, tuple[str, Path]] = {}
    if data_root is not None:
        existing_folder("--data-root", data_root)
        roots = {name: ("--data-root", data_root / name) for name in DATA_ROOT_DATASETS}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ArgumentProblem(f"argument --root: {value!r} is not DATASET=DIR (e.g. vfhq=/data/VFHQ)")
        roots[name] = (f"--root {value}", existing_folder(f"--root {value}", Path(path)))
    for dataset in dict.fromkeys(clip.dataset for clip in split.clips):
        if dataset not in roots:
            raise ArgumentProblem(
                f"the split has {dataset} clips but no root for them: give --root {dataset}=DIR (the dataset's folder)"
            )
        flag, root = roots[dataset]
        if not root.is_dir():  # a --data-root without this dataset's folder
            raise ArgumentProblem(f"argument {flag}: {root}: no such folder (for the split's {dataset} clips)")
        media = [root / clip.media for clip in split.clips if clip.dataset == dataset]
        if not any(path.exists() for path in media):
            raise ArgumentProblem(
                f"argument {flag}: {root} holds none of the split's {len(media)} {dataset} clips "
                f"(e.g. no {media[0]}): give the folder of the dataset's official layout"
            )
    return {name: root for name, (_, root) in roots.items()}


def method_kind(method: str, outputs: Path | None, checkpoint: Path | None) -> str:
    """`ours`, a baseline's name, or `outputs` (another method's videos), once its arguments fit."""
    if outputs is not None:
        existing_folder("--outputs", outputs)
        return "outputs"
    if method == OURS and checkpoint is None:
        raise ArgumentProblem("argument --checkpoint: --method ours needs --checkpoint DIR (a training export)")
    if method not in BUILT_IN:
        raise ArgumentProblem(
            f"argument --method: {method!r}: use {', '.join(BUILT_IN)}, or --outputs DIR for another method's videos"
        )
    return method
