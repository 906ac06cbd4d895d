"""One compute thread per worker process: the pipeline scales by processes (Ray workers ≈ cores), not threads.

Each library below starts its own thread pool sized to the machine; with N workers on N cores that is
N² threads fighting for N cores, the usual hidden slowdown of CPU pipelines. Most pools are sized once,
when their library loads, from an environment variable, so those must be set before the first
`import numpy` / `import onnxruntime` of the process (in the worker's environment, e.g. Ray's
`runtime_env={"env_vars": THREAD_ENV}`), which no function called later can do for that process:

- `OMP_NUM_THREADS`: OpenMP pools (onnxruntime builds that use OpenMP, OpenBLAS built with OpenMP, torch);
- `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS`, `BLIS_NUM_THREADS`: numpy's BLAS, whichever it links;
- `VECLIB_MAXIMUM_THREADS`: numpy's Accelerate BLAS on macOS;
- `NUMEXPR_NUM_THREADS`: numexpr (pandas may load it).

onnxruntime's own pools are set per session (`intra_op_num_threads`, see the SCRFD backend) and
OpenCV's pool can be changed at any time (`cv2.setNumThreads`), which `limit_threads` does.
mediapipe's legacy solutions expose no thread setting; measured here on 2 cores, unpinned, its face
detection and FaceMesh graphs use at most one core's worth of CPU (CPU time / wall time <= 1).
"""

from __future__ import annotations

import os

import cv2

THREAD_ENV = {
    name: "1"
    for name in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "BLIS_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    )
}


def limit_threads() -> None:
    """OpenCV to one thread now; the variables above to 1 unless the user set them.

    The variables reach libraries not loaded yet and child processes; a library already loaded keeps
    its pool, hence the module docstring's advice to set them in the worker's environment.
    """
    for name, value in THREAD_ENV.items():
        os.environ.setdefault(name, value)
    cv2.setNumThreads(1)
