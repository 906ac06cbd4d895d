"""The ground-truth side of every metric, computed once per clip and reused by every method's run.

Why: a split's real videos are the same for every method, yet each run computed their Inception and I3D
features, their identity embeddings and their face analysis again: at the paper's scale that is half of
every method's metric cost. Here each is computed on first need and kept in a cache folder shared by all
runs (`rp-eval run --gt-cache`), so the second method's run pays for its own videos only.

An entry is keyed by what its values depend on, so a stale one is never read:
- the split (its file's sha256: a folder per split, easy to delete);
- the clip's content: the sha256 of its frames at the evaluation crop (another size, crop, frame cap or
  media file gives other frames, hence another entry);
- the metric's version (`Versions`): its network's weight file sha256, the installed versions of the
  libraries behind it, the device and precision the features were taken with, and `VERSION`, raised
  whenever this module or a metric changes what it stores.

Per clip and metric, one `.npz` file, written atomically (a crash leaves the old file or none):
- `inception`: every frame's Inception features (self FID's real set is the scored window of them, cross
  FID's real set all of them);
- `i3d`: the I3D features of each window start asked for so far (each task draws its own windows);
- `CSIM-dlib`, `CSIM-arcface`: the embeddings of each frame asked for so far, NaN where no face was found;
- `lpips-steps`: LPIPS between consecutive frames (tLP's reference terms);
- `motion`: the whole clip's face analysis (FaceMesh landmarks, expression measures, head pose).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.clips import EvalClip
from eval.library_versions import metric_versions
from eval.metrics.face_motion import Motion
from eval.metrics.identity import ArcfaceIdentity, DlibIdentity
from eval.scorers import Scorers
from eval.task_sets import load_features, save_features
from eval.tasks import file_stem

VERSION = 1
ENV_VAR = "RP_EVAL_CACHE"
DEFAULT_DIR = Path.home() / ".cache" / "realportrait" / "eval"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Versions:
    """metric kind -> the text its cached values depend on (see the module docstring)."""

    kinds: dict[str, str]

    @classmethod
    def of(cls, scorers: Scorers) -> Versions:
        """The versions of `scorers`' networks, with where and in what precision they run (features taken
        on another device or in another dtype differ in their last bits)."""
        versions = metric_versions(("LPIPS", "FID", "FVD", "CSIM-dlib", "CSIM-arcface", "AED"))
        info = scorers.device_info()
        device = f"device {info['metric_device']} {info['metric_dtype']}"

        def text(metric: str, *parts: str) -> str:
            libraries = ", ".join(f"{name} {version}" for name, version in sorted(versions[metric].items()))
            return "; ".join([f"ground truth v{VERSION}", metric, *parts, libraries, device])

        kinds: dict[str, str] = {}
        if scorers.inception is not None:
            kinds["inception"] = text("FID", f"weights {scorers.inception.weights.sha256}")
        if scorers.i3d is not None:
            length = scorers.config.fvd.clip_length
            kinds["i3d"] = text("FVD", f"weights {scorers.i3d.weights.sha256}", f"{length}-frame windows")
        for network in (scorers.identity, scorers.arcface):
            if network is not None:
                hashes = " ".join(sorted(w.sha256 for w in network.weights))
                kinds[network.name] = text(network.name, f"weights {hashes}")
        if scorers.lpips is not None:
            kinds["lpips-steps"] = text("LPIPS", f"weights {scorers.lpips.weights.sha256}")
        if scorers.face_motion is not None:
            kinds["motion"] = text("AED", "FaceMesh 478 tracked over the whole clip, frame 0 twice")
        return cls(kinds)


@dataclass
class GroundTruthCache:
    """Where a split's ground-truth features live; `folder` None keeps nothing (every value computed)."""

    @classmethod
    def disabled(cls) -> GroundTruthCache:
        """No cache: every value is computed (tests that score frames directly, `--no-gt-cache`)."""
        return cls(None, "", Versions({}))

    folder: Path | None
    split_sha256: str
    versions: Versions
    computed: Counter = field(default_factory=Counter)  # kind -> entries computed in this run
    reused: Counter = field(default_factory=Counter)  # kind -> entries read from the cache
    seconds: Counter = field(default_factory=Counter)  # kind -> time spent computing them

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[kind] += time.perf_counter() - start

    def path(self, kind: str, clip: EvalClip) -> Path | None:
        if self.folder is None:
            return None
        version = digest(self.versions.kinds[kind])
        return (
            Path(self.folder)
            / self.split_sha256[:16]
            / f"{kind}-{version}"
            / f"{file_stem(clip.item_id)}-{clip.content_sha256[:16]}.npz"
        )

    def read(self, kind: str, clip: EvalClip) -> dict[str, np.ndarray] | None:
        path = self.path(kind, clip)
        if path is None or not path.is_file():
            return None
        try:
            arrays = load_features(path)
        except (OSError, ValueError):  # a file cut short by a full disk: computed again
            return None
        self.reused[kind] += 1
        return arrays

    def write(self, kind: str, clip: EvalClip, arrays: dict[str, np.ndarray]) -> None:
        self.computed[kind] += 1
        path = self.path(kind, clip)
        if path is not None:
            save_features(path, **arrays)
            description = path.parent / "version.txt"  # what the folder's name stands for, for a person
            if not description.is_file():
                description.write_text(self.versions.kinds[kind] + "\n", encoding="utf-8")

    def record(self) -> dict[str, object]:
        """For run.json: where the cache is and what this run computed and reused."""
        return {
            "folder": str(self.folder) if self.folder else None,
            "versions": self.versions.kinds,
            "computed": dict(sorted(self.computed.items())),
            "reused": dict(sorted(self.reused.items())),
            "seconds": {kind: round(value, 3) for kind, value in sorted(self.seconds.items())},
        }


class Truth:
    """One clip's ground-truth side: each value computed on first need, or read from the cache."""

    def __init__(self, clip: EvalClip, scorers: Scorers, cache: GroundTruthCache):
        self.clip, self.scorers, self.cache = clip, scorers, cache

    def whole(self, kind: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """A value of the whole clip: read from the cache, else computed (timed) and kept."""
        cached = self.cache.read(kind, self.clip)
        if cached is not None:
            return cached
        with self.cache.timed(kind):
            arrays = compute()
        self.cache.write(kind, self.clip, arrays)
        return arrays

    def inception(self) -> np.ndarray:
        """(T, 2048) float32 Inception features of every frame."""
        assert self.scorers.inception is not None
        network = self.scorers.inception
        return self.whole("inception", lambda: {"features": network(self.clip.frames).astype(np.float32)})["features"]

    def i3d(self, starts: list[int]) -> np.ndarray:
        """(len(starts), 400) float32 I3D features of the windows starting at `starts`."""
        assert self.scorers.i3d is not None
        cached = self.cache.read("i3d", self.clip)
        known: dict[int, np.ndarray] = {}
        if cached is not None:
            known.update(zip(cached["starts"].tolist(), cached["features"], strict=True))
        missing = [s for s in starts if s not in known]
        if missing:
            length = self.scorers.config.fvd.clip_length
            with self.cache.timed("i3d"):
                features = self.scorers.i3d.windows(self.clip.frames, missing, length).astype(np.float32)
            known.update(zip(missing, features, strict=True))
            order = sorted(known)
            arrays = {"starts": np.array(order, np.int64), "features": np.stack([known[s] for s in order])}
            self.cache.write("i3d", self.clip, arrays)
        return np.stack([known[s] for s in starts]) if starts else np.zeros((0, 400), np.float32)

    def embeddings(self, network: DlibIdentity | ArcfaceIdentity, indices: list[int]) -> list[np.ndarray | None]:
        """The identity embeddings of the frames `indices`; None where the network finds no face."""
        cached = self.cache.read(network.name, self.clip)
        known: dict[int, np.ndarray | None] = {}
        if cached is not None:
            for index, row in zip(cached["indices"].tolist(), cached["embeddings"], strict=True):
                known[index] = row if np.isfinite(row).all() else None
        missing = [i for i in dict.fromkeys(indices) if i not in known]
        if missing:
            with self.cache.timed(network.name):
                known.update(zip(missing, network.embed_all(self.clip.frames[missing]), strict=True))
            order = sorted(known)
            width = next((len(v) for v in known.values() if v is not None), 1)
            table = np.stack([known[i] if known[i] is not None else np.full(width, np.nan) for i in order])
            self.cache.write(network.name, self.clip, {"indices": np.array(order, np.int64), "embeddings": table})
        return [known[i] for i in indices]

    def lpips_steps(self) -> np.ndarray:
        """(T - 1,) LPIPS between consecutive frames (tLP's reference terms, `Lpips.steps`)."""
        assert self.scorers.lpips is not None
        network = self.scorers.lpips
        return self.whole("lpips-steps", lambda: {"steps": network.steps(self.clip.frames).astype(np.float32)})["steps"]

    def motion(self) -> Motion:
        """The whole clip's face analysis (`FaceMotion.analyse`)."""
        assert self.scorers.face_motion is not None
        analyser = self.scorers.face_motion

        def analyse() -> dict[str, np.ndarray]:
            motion = analyser.analyse(self.clip.frames)
            return {"landmarks": motion.landmarks, "expression": motion.expression, "pose": motion.pose}

        arrays = self.whole("motion", analyse)
        return Motion(arrays["landmarks"], arrays["expression"], arrays["pose"])


def cache_folder(path: str | Path | None) -> Path:
    """The folder given, else $RP_EVAL_CACHE, else ~/.cache/realportrait/eval."""
    if path is not None:
        return Path(path)
    return Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else DEFAULT_DIR
