"""The metric networks a run uses, loaded once; the ones whose weights are missing are named, not guessed.

A metric asked for explicitly (`EvalConfig.metrics` changed from its default) whose weights are missing
stops the run with the message naming the file; with the default list, it is marked "weights missing" in
the results and the tables, and the run goes on with the others. A present file whose sha256 is not its
pin stops the run before any network loads (`eval.weights.WeightsMismatch`), unless `allow_unpinned`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eval.columns import COLUMNS
from eval.config import EvalConfig
from eval.metrics.face_motion import FaceMotion
from eval.metrics.fid import InceptionFeatures
from eval.metrics.fvd import I3DFeatures
from eval.metrics.identity import ArcfaceIdentity, DlibIdentity
from eval.metrics.perceptual import Lpips
from eval.weights import LoadedWeights, WeightsMissing, verify
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


def load_scorers(
    config: EvalConfig, folder: str | Path | None, *, explicit: bool, allow_unpinned: bool = False
) -> Scorers:
    """Load the networks `config.metrics` need from the weights folder `folder`; `allow_unpinned` loads
    files that are not the official ones (recorded as such) instead of refusing them."""
    scorers = Scorers(config)
    wanted = set(config.metrics)
    keys = [key for metric in config.metrics if metric in COLUMNS for key in COLUMNS[metric].weights]
    verify(list(dict.fromkeys(keys)), folder, allow_unpinned=allow_unpinned)
    loaders = {
        "lpips": (("LPIPS", "tLP"), Lpips.load),
        "inception": (("FID",), InceptionFeatures.load),
        "i3d": (("FVD",), I3DFeatures.load),
        "identity": (("CSIM-dlib", "CSIM-dlib-driver", "CSIM-dlib-leak"), DlibIdentity.load),
        "arcface": (("CSIM-arcface", "CSIM-arcface-driver", "CSIM-arcface-leak"), ArcfaceIdentity.load),
    }
    for attribute, (metrics, loader) in loaders.items():
        if not wanted & set(metrics):
            continue
        try:
            setattr(scorers, attribute, loader(folder, allow_unpinned=allow_unpinned))
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
