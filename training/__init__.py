"""Two-stage DeepSpeed training of RealPortrait on the shards of `rp-data build` (issue 5).

- `train`: the entry point, `deepspeed training/train.py --config training/configs/X.yaml [key=value ...]`
- `config`: the YAML schema (pydantic), `base` chains and `key=value` overrides
- `data`: the WebDataset loader (resampled shards per rank and worker, mixing, shuffling, batching, skip counts)
- `examples`: one shard sample -> one example (image-mode pairs with random crops, video-mode clips)
- `engine`: a stage's model, trainable parameters, AdamW + warm-up, DeepSpeed config, the loss module
- `ema`: the EMA weights; `checkpoints`: DeepSpeed checkpoints, rotation, resume, the export
- `heldout`: the evaluation split kept out of the build's samples, and its record beside every export
- `export`: `python -m training.export`, a checkpoint's EMA or live (ZeRO-consolidated) weights -> save_pretrained
- `monitor`: TensorBoard scalars/images/videos and the console progress line; `validation`: fixed samples
- `configs/`: stage1.yaml and stage2.yaml (the paper's settings), tiny.yaml (CPU smoke run), zero2/zero3.json
"""
