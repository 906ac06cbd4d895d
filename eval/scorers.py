"""The metric networks a run uses, loaded once; the ones whose weights are missing are named, not guessed.

A metric asked for explicitly (`EvalConfig.metrics` changed from its default) whose weights are missing
stops the run with the message naming the file; with the default list, it is marked "weights missing" in
the results and the tables, and the run goes on with the others. A present file whose sha256 is not its
pin stops the run before any network loads (`eval.weights.WeightsMismatch`), unless `allow_unpinned`.

The networks load on the metric device in the metric dtype (`eval.compute`: fp32 unless asked), and torch
and onnxruntime get one thread per CPU the process may use; `device_info` is what run.json records of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eval.columns import COLUMNS
from eval.compute import CPU, dtype_name, use_allowed_cpus
from eval.config import EvalConfig
from eval.metrics.face_motion import FaceMotion
from eval.metrics.fid import InceptionFeatures
from eval.metrics.fvd import I3DFeatures
from eval.metrics.identity import ArcfaceIdentity, DlibIdentity
from eval.metrics.perceptual import Lpips
from eval.weights import LoadedWeights, WeightsMissing, verify
from model.precision import Precision
from pipeline.faces import open_landmarker


@dataclass
class Scorers:
    config: EvalConfig
    lpips: Lpips | None = None
    inception: InceptionFeatures | None = None
    i3d: I3DFeatures | None = None
    identity: DlibIdentity | None = None
    arcface: ArcfaceIdentity | None = None
    face_motion: FaceMotion | None = None
    missing: dict[str, str] = field(default_factory=dict)  # metric -> the WeightsMissing message
    precision: Precision = CPU
    threads: int = 1

    def active(self, metric: str) -> bool:
        return metric in self.config.metrics and metric not in self.missing

    def weights(self) -> list[LoadedWeights]:
        records: list[LoadedWeights] = []
        for scorer in (self.lpips, self.inception, self.i3d):
            if scorer is not None:
                records.append(scorer.weights)
        for network in (self.identity, self.arcface):
            if network is not None:
                records += network.weights
        return records

    def device_info(self) -> dict[str, object]:
        """Where the metric networks ran: device, dtype, CPU threads, ArcFace's onnxruntime provider."""
        info: dict[str, object] = {
            "metric_device": str(self.precision.device),
            "metric_dtype": dtype_name(self.precision.dtype),
            "metric_threads": self.threads,
        }
        if self.arcface is not None:
            info["arcface_provider"] = self.arcface.provider
            if self.arcface.provider_note:
                info["arcface_provider_note"] = self.arcface.provider_note
        return info


def load_scorers(
    config: EvalConfig,
    folder: str | Path | None,
    *,
    explicit: bool,
    precision: Precision = CPU,
    allow_unpinned: bool = False,
) -> Scorers:
    """Load the networks `config.metrics` need from the weights folder `folder`, on `precision`'s device;
    `allow_unpinned` loads files that are not the official ones (recorded as such) instead of refusing them."""
    wanted = set(config.metrics)
    keys = [key for metric in config.metrics if metric in COLUMNS for key in COLUMNS[metric].weights]
    verify(list(dict.fromkeys(keys)), folder, allow_unpinned=allow_unpinned)
    scorers = Scorers(config, precision=precision, threads=use_allowed_cpus())
    pinned = {"allow_unpinned": allow_unpinned}
    loaders: dict[str, tuple[tuple[str, ...], Callable[[str | Path | None], object]]] = {
        "lpips": (("LPIPS", "tLP"), lambda where: Lpips.load(where, precision, **pinned)),
        "inception": (("FID",), lambda where: InceptionFeatures.load(where, precision, **pinned)),
        "i3d": (("FVD",), lambda where: I3DFeatures.load(where, precision, **pinned)),
        "identity": (
            ("CSIM-dlib", "CSIM-dlib-driver", "CSIM-dlib-leak"),
            lambda where: DlibIdentity.load(where, **pinned),
        ),
        "arcface": (
            ("CSIM-arcface", "CSIM-arcface-driver", "CSIM-arcface-leak"),
            lambda where: ArcfaceIdentity.load(where, precision, scorers.threads, **pinned),
        ),
    }
    for attribute, (metrics, loader) in loaders.items():
        if not wanted & set(metrics):
            continue
        try:
            setattr(scorers, attribute, loader(folder))
        except WeightsMissing as exc:
            if explicit:
                raise
            for metric in metrics:
                scorers.missing[metric] = str(exc)
    if wanted & {"AED", "APD", "AED-legacy-abs"}:
        scorers.face_motion = FaceMotion(open_landmarker())
    for metric in wanted:
        if metric not in COLUMNS:
            raise ValueError(f"unknown metric {metric!r}")
    return scorers
