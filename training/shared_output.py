"""The start-up check that every rank sees the output directory rank 0 writes.

Only rank 0 writes a stage's checkpoints' `latest` tag, `trainer_state.json` and `ema/`, yet every rank reads
them to resume, so a multi-node run needs `output_dir` on a filesystem every node mounts. On node-local
disks the other nodes find no tag (or an old one) and hang in a collective or diverge. So before any work,
rank 0 writes a marker holding a token unique to this launch, sends the token to every rank (the broadcast
comes after the write, so it is also the barrier), every rank reads the marker and compares, and the
outcomes are gathered: every rank then knows which host(s) cannot see it and all stop together with the
same error. The check costs one broadcast and one gather; nothing waits or retries.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

import torch.distributed as dist

from training.config import ConfigError

MARKER = ".shared_output_check"


class SharedOutputError(ConfigError):
    """Some rank cannot see the marker rank 0 wrote in `output_dir`."""


def _problem(marker: Path, token: str) -> str | None:
    """Why this rank does not see rank 0's marker, or None when it does."""
    try:
        seen = marker.read_text()
    except FileNotFoundError:
        return "no such file"
    except OSError as error:
        return f"unreadable: {error}"
    return None if seen == token else f"it holds another launch's token ({seen[:80]!r})"


def check_shared_output(output_dir: Path, rank: int, world: int) -> None:
    """Collective: returns on every rank when every rank reads this launch's marker in `output_dir`, else
    raises SharedOutputError on every rank, naming the ranks, their hosts and the path."""
    marker = Path(output_dir) / MARKER
    host = socket.gethostname()
    sent: list[str | None] = [None, None]  # rank 0's token, or why it could not write the marker
    if rank == 0:
        sent = [f"{host} pid {os.getpid()} {uuid.uuid4().hex}", None]
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            partial = marker.with_name(f"{MARKER}.partial")
            partial.write_text(str(sent[0]))
            partial.replace(marker)
        except OSError as error:
            sent = [None, str(error)]
    dist.broadcast_object_list(sent, src=0)  # a rank 0 that cannot write must not leave the others waiting
    token, unwritable = sent
    if unwritable is not None:
        raise SharedOutputError(f"output_dir {output_dir}: rank 0 cannot write {marker}: {unwritable}")
    outcomes: list[Any] = [None] * world  # (rank, host, problem or None) of every rank
    dist.all_gather_object(outcomes, (rank, host, _problem(marker, str(token))))
    if rank == 0:
        marker.unlink()  # every rank has read it: the gather comes after the reads
    failed = [outcome for outcome in outcomes if outcome[2] is not None]
    if failed:
        where = "; ".join(f"rank {rank_} on {host_}: {problem}" for rank_, host_, problem in failed)
        raise SharedOutputError(
            f"output_dir {output_dir}: the marker rank 0 (on {outcomes[0][1]}) wrote at "
            f"{marker} is not seen by {where}. Every node must mount output_dir on one shared filesystem (NFS, "
            "Lustre, ...) at the same path: rank 0 alone writes the checkpoints, `latest`, trainer_state.json "
            "and ema/, and every rank reads them to resume (see the README's two-node launch)"
        )
