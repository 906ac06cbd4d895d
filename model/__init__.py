"""The RealPortrait model (see DESIGN.md, issue 4).

- `vae`: the frozen SD1.5 VAE, clips encoded/decoded in frame chunks
- `embeddings`, `attention`, `stdit2`: the STDiT2 backbone with reference attention
- `controlnet`: the 13-block parallel ControlNet over the motion features
- `motion`: the dense implicit motion encoder, its training augmentation, rendered landmarks
- `diffusion`: DDPM schedule, loss, DDIM sampler
- `realportrait`: the composed model, presets, save/load; `opensora_import`: Open-Sora 1.1 weights
- `costs`: analytic FLOPs / memory / training-time model
"""
