"""Evaluation (issue 6): paper-style tables for our model, the baselines and any other method.

- `weights`: the registry of metric weight files (source, sha256), found in one local folder; safe loading
- `config`: the evaluation protocol (YAML, pydantic), fingerprinted so tables flag incomparable rows
- `clips`: a split clip at the evaluation crop (the pipeline's detector and stable crop), the same for all
- `tasks`: self- and cross-reenactment tasks of a split, and the outputs-folder file layout
- `methods`: ours (through `model.animate`), another method's outputs folder; `baselines`: source copy,
  landmark warp
- `metrics/`: pixel (L1, PSNR, SSIM), perceptual (LPIPS, tLP), frechet, fid, fvd, identity (CSIM-dlib,
  CSIM-arcface), face_motion (AED, APD); `columns`: direction, unit and backend of each
- `scorers`: the metric networks of a run, or the "weights missing" message of each absent one
- `run`: `rp-eval run` (tasks.parquet, summary.parquet, run.json); `inputs`: `rp-eval inputs`
- `tables`: `rp-eval table` (Markdown, LaTeX, CSV, PNG); `cli`: the `rp-eval` command
"""
