"""What each metric column means: direction, unit, protocols, the weights it needs, its backend line."""

from __future__ import annotations

from dataclasses import dataclass

from eval.metrics import face_motion, fid, fvd, identity, perceptual


@dataclass(frozen=True)
class Column:
    key: str  # as in EvalConfig.metrics
    label: str  # the table header (extractor-defined metrics carry the extractor's name)
    higher_is_better: bool
    unit: str
    protocols: tuple[str, ...]
    weights: tuple[str, ...]  # eval.weights keys
    backend: str
    # the tasks.parquet column counting the scored frames this metric skipped because a face was missing
    # (eval.md §6.6); None for metrics that need no face
    without_face: str | None = None

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


MOTION_WITHOUT_FACE = "face_motion_frames_without_face"  # AED, APD and AED-legacy-abs share one face analysis


PIXELS = "[0,1] floats at the evaluation crop; torchmetrics"


def leakage_columns(network: str, weights: tuple[str, ...], backend: str) -> tuple[Column, Column]:
    """Driver-identity leakage in cross-reenactment, by the identity network `network` (its CSIM column
    there is the similarity to the source): the similarity of each generated frame to its driving frame,
    and the share of frames closer to the driver than to the source (`identity.leakage`)."""
    short = network.removeprefix("CSIM-")
    return (
        Column(
            f"{network}-driver",
            f"{network}-driver",
            False,
            "cosine to the driving frame",
            ("cross",),
            weights,
            backend,
            f"{network}-driver_frames_without_face",
        ),
        Column(
            f"{network}-leak",
            f"Leak-{short}",
            False,
            "share of frames closer to the driver than to the source",
            ("cross",),
            weights,
            backend,
            f"{network}-leak_frames_without_face",
        ),
    )


COLUMNS: dict[str, Column] = {
    c.key: c
    for c in (
        Column("L1", "L1", False, "[0,1] scale", ("self",), (), "mean |gen - GT|, " + PIXELS),
        Column("PSNR", "PSNR", True, "dB", ("self",), (), "10 log10(1/MSE) on floats, capped at 100 dB; " + PIXELS),
        Column("SSIM", "SSIM", True, "", ("self",), (), "Gaussian 11, sigma 1.5, range 1, valid region; " + PIXELS),
        Column("LPIPS", "LPIPS", False, "", ("self",), ("alexnet",), perceptual.BACKEND),
        Column("FID", "FID", False, "", ("self", "cross"), ("inception",), fid.BACKEND),
        Column("FVD", "FVD", False, "mean ± std over seeds", ("self", "cross"), ("i3d",), fvd.BACKEND),
        Column(
            "CSIM-dlib",
            "CSIM-dlib",
            True,
            "cosine",
            ("self", "cross"),
            ("dlib_face", "dlib_shape5"),
            identity.DLIB_BACKEND,
            "CSIM-dlib_frames_without_face",
        ),
        Column(
            "CSIM-arcface",
            "CSIM-arcface",
            True,
            "cosine",
            ("self", "cross"),
            ("arcface",),
            identity.ARCFACE_BACKEND,
            "CSIM-arcface_frames_without_face",
        ),
        *leakage_columns("CSIM-dlib", ("dlib_face", "dlib_shape5"), identity.DLIB_BACKEND),
        *leakage_columns("CSIM-arcface", ("arcface",), identity.ARCFACE_BACKEND),
        Column(
            "AED",
            face_motion.AED_NAME,
            False,
            face_motion.AED_UNIT,
            ("self", "cross"),
            (),
            face_motion.RELATIVE_BACKEND,
            MOTION_WITHOUT_FACE,
        ),
        Column(
            "APD",
            face_motion.APD_NAME,
            False,
            "degrees",
            ("self", "cross"),
            (),
            face_motion.BACKEND,
            MOTION_WITHOUT_FACE,
        ),
        Column("tLP", "tLP", False, "", ("self", "cross"), ("alexnet",), perceptual.BACKEND),
        Column(
            "PSNR-legacy-uint8",
            "PSNR-legacy-uint8",
            True,
            "dB (uint8 wrap-around bug, §6.1)",
            ("self",),
            (),
            "DisCo-style uint8 subtraction, kept only for comparison with such tables",
        ),
        Column(
            "AED-legacy-abs",
            face_motion.AED_ABSOLUTE_NAME,
            False,
            "interocular distances (absolute: rewards copying the driver's face shape)",
            ("self", "cross"),
            (),
            face_motion.BACKEND + "; kept only for comparison with tables that used it",
            MOTION_WITHOUT_FACE,
        ),
    )
}
