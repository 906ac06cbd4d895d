"""The metric networks on a device (issue 22): one code path for CPU and CUDA, batches that do not change
a value, fp32 unless asked, and one thread per CPU the process may use.

The networks are the real architectures with test-made weights (conftest's `metric_weights`); the CUDA test
runs where a GPU is, on the same frames, against the CPU's values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.cli import parser
from eval.compute import CPU, cgroup_cpu_quota, metric_precision
from eval.config import load_config
from eval.made_weights import face_frames
from eval.metrics.fid import InceptionFeatures
from eval.metrics.fvd import I3DFeatures
from eval.metrics.identity import ArcfaceIdentity, onnx_providers
from eval.metrics.perceptual import Lpips
from eval.scorers import load_scorers
from model.precision import Precision

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frames(sample_root: Path) -> np.ndarray:
    return face_frames(sample_root)


def values(metric_weights: Path, frames: np.ndarray, precision: Precision, batches: tuple[int, ...]) -> list[dict]:
    """LPIPS, Inception and I3D outputs on a few frames, the networks taking `batch` items a call, per batch."""
    lpips, inception, i3d = (
        network.load(metric_weights, precision, allow_unpinned=True)
        for network in (Lpips, InceptionFeatures, I3DFeatures)
    )
    out = []
    for batch in batches:
        lpips.batch = inception.batch = i3d.batch = batch
        out.append(
            {
                "lpips": lpips.distances(frames[:5], frames[18:23]),
                "inception": inception(frames[:3]),
                "i3d": i3d.windows(frames, [0, 18], 16),
            }
        )
    return out


def test_a_batch_size_does_not_change_a_value(metric_weights: Path, frames: np.ndarray) -> None:
    one, several = values(metric_weights, frames, CPU, (1, 2))  # 2: full batches and a partial one
    for name in one:
        assert one[name].shape == several[name].shape and len(one[name]) in (2, 3, 5)
        np.testing.assert_allclose(several[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
    assert np.ptp(one["lpips"]) > 0 and not np.allclose(one["i3d"][0], one["i3d"][1], atol=1e-3)  # not constant


def test_bf16_autocast_on_the_cpu_stays_close_to_fp32(metric_weights: Path, frames: np.ndarray) -> None:
    """`--dtype bf16` runs the same path under autocast; LPIPS moves by about bf16's rounding, no more."""
    exact = Lpips.load(metric_weights, CPU, allow_unpinned=True).distances(frames[:4], frames[18:22])
    bf16 = metric_precision("cpu", "bf16")
    rounded = Lpips.load(metric_weights, bf16, allow_unpinned=True).distances(frames[:4], frames[18:22])
    assert rounded.dtype == exact.dtype and not np.array_equal(rounded, exact)  # it did run in bf16
    np.testing.assert_allclose(rounded, exact, rtol=0.05)


def test_metrics_run_in_fp32_unless_a_dtype_is_given() -> None:
    assert metric_precision("cpu", None) == CPU
    assert metric_precision("cpu", "bf16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="--dtype"):
        metric_precision("cpu", "fp8")
    args = parser().parse_args(
        ["run", "--split", "s.json", "--method", "source-copy", "--out", "o", "--device", "cpu", "--dtype", "bf16"]
    )
    assert (args.device, args.dtype) == ("cpu", "bf16")  # no longer only for --method ours
    scorers = load_scorers(load_config(None, ["metrics=[L1]"]), None, explicit=True, precision=CPU)
    assert scorers.device_info() == {"metric_device": "cpu", "metric_dtype": "fp32", "metric_threads": scorers.threads}


def test_arcface_asks_onnxruntime_for_cuda_only_where_it_can_have_it() -> None:
    cuda = Precision(torch.device("cuda", 1), torch.float32)
    providers, note = onnx_providers(cuda, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers[0] == ("CUDAExecutionProvider", {"device_id": 1}) and note is None
    providers, note = onnx_providers(cuda, ["CPUExecutionProvider"])
    assert providers == ["CPUExecutionProvider"] and note is not None and "CUDAExecutionProvider" in note
    assert onnx_providers(CPU, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == (["CPUExecutionProvider"], None)


def test_arcface_batches_give_the_faces_one_by_one_values(metric_weights: Path, frames: np.ndarray) -> None:
    identity = ArcfaceIdentity.load(metric_weights, allow_unpinned=True)
    clip = frames[:4].copy()
    clip[2] = 0  # no face: None in its place, the others still batched
    batched = identity.embed_all(clip)
    assert identity.batch > 1 and batched[2] is None
    for frame, embedding in zip(clip, batched, strict=True):
        single = identity.embed(frame)
        assert (single is None) == (embedding is None)
        if embedding is not None:
            np.testing.assert_allclose(embedding, single, rtol=1e-5, atol=1e-6)


THREADS_CHILD = """
import json, os, sys
import torch
from eval.config import load_config
from eval.scorers import load_scorers
if sys.argv[2] == "one":
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
config = load_config(None, ["metrics=[LPIPS,CSIM-arcface]"])
scorers = load_scorers(config, sys.argv[1], explicit=True, allow_unpinned=True)
options = scorers.arcface.session.get_session_options()
print(json.dumps([scorers.threads, torch.get_num_threads(), options.intra_op_num_threads]))
"""


@pytest.mark.parametrize("cpus", ["one", "all"])
def test_the_scorers_use_every_cpu_the_process_may_use(metric_weights: Path, cpus: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OMP_NUM_THREADS", None)
    child = subprocess.run(
        [sys.executable, "-c", THREADS_CHILD, str(metric_weights), cpus],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    allowed = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota()
    expected = 1 if cpus == "one" else min(allowed, quota) if quota is not None else allowed
    assert json.loads(child.stdout.strip().splitlines()[-1]) == [expected] * 3


def test_a_cgroup_quota_caps_the_cpus(tmp_path: Path) -> None:
    job = tmp_path / "machine.slice" / "job"
    job.mkdir(parents=True)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "machine.slice" / "cpu.max").write_text("350000 100000\n")
    (job / "cpu.max").write_text("max 100000\n")
    membership = "0::/machine.slice/job\n"
    assert cgroup_cpu_quota(tmp_path, membership) == 3  # the parent's 3.5 CPUs, rounded down
    (job / "cpu.max").write_text("50000 100000\n")
    assert cgroup_cpu_quota(tmp_path, membership) == 1  # half a CPU is still one thread
    assert cgroup_cpu_quota(tmp_path, "0::/elsewhere\n") is None  # only the root's "max": no quota
    assert cgroup_cpu_quota(tmp_path, "1:cpu:/v1-only\n") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; torch sees none on this machine")
def test_on_cuda_the_metrics_match_the_cpu(metric_weights: Path, frames: np.ndarray) -> None:
    [on_cpu] = values(metric_weights, frames, CPU, (2,))
    [on_cuda] = values(metric_weights, frames, metric_precision("cuda", None), (2,))
    for name in on_cpu:
        np.testing.assert_allclose(on_cuda[name], on_cpu[name], rtol=1e-3, atol=1e-4, err_msg=name)
    identity = ArcfaceIdentity.load(metric_weights, metric_precision("cuda", None), allow_unpinned=True)
    assert identity.provider == "CUDAExecutionProvider" or identity.provider_note is not None
