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

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


PIXELS = "[0,1] floats at the evaluation crop; torchmetrics"
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
        ),
        Column(
            "CSIM-arcface",
            "CSIM-arcface",
            True,
            "cosine",
            ("self", "cross"),
            ("arcface",),
            identity.ARCFACE_BACKEND,
        ),
        Column("AED", face_motion.AED_NAME, False, "interocular distances", ("self", "cross"), (), face_motion.BACKEND),
        Column("APD", face_motion.APD_NAME, False, "degrees", ("self", "cross"), (), face_motion.BACKEND),
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
    )
}
