"""The metrics of eval.md §2, each in its own module, each with the backend it names in the tables.

- `pixel`: L1, PSNR (correct; `psnr_legacy_uint8` only as a named option), SSIM (torchmetrics, range pinned)
- `perceptual`: LPIPS (lpips package, AlexNet trunk from the weights folder) and tLP
- `frechet`: the Fréchet distance between two feature sets (FID and FVD share it)
- `fid`: torch-fidelity's InceptionV3 features; `fvd`: cd-fvd's I3D features over pinned 16-frame windows
- `identity`: CSIM-dlib (offline, real weights) and CSIM-arcface (ONNX from the weights folder)
- `face_motion`: AED and APD from the pipeline's own landmarks and head pose
"""
