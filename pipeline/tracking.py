"""The main face's track through a shot, the runs where it is visible, and one stable crop per run.

The detector runs on every k-th frame; between two detections the box is interpolated. A track starts
on the largest prominent face and then follows that face only: a later detection belongs to the track
when it passes the gate below, whatever else is in the frame. A sampled frame with no face inside the
gate is a miss. Detectors miss a face for a frame or two (a turned head, a hand, motion blur), so up to
`max_missed` consecutive misses are bridged when the face comes back inside the gate, the box being
interpolated across them; a longer gap ends the run at the last detection of the face. The next run
starts at the sample after that one, on the largest face there, so a face that showed up during the gap
gets its own run and no run ever holds frames whose subject is somebody else.

The gate, measured against the track's last box, both as it was and as moved by the track's velocity
(a turning or walking head keeps moving while it is missed; one that stops is still where it was):
- the size may change by at most `max_scale_change` (in side length) either way: a face does not grow
  or shrink by half between samples, so a much larger or smaller face is somebody in front or behind;
- and the box overlaps by IoU >= `min_iou` (between equal boxes, a shift of up to about two thirds of a
  side; it also holds a face that grew or shrank in place) or its centre lies within `centre_gate`
  track sides (half a side by default; it also holds a face whose box changed shape as it moved).
  Between two samples (0.2 s at 25 fps with the detector on every 5th frame) a talking head moves well
  under half its width, and faster steady motion is followed through the velocity; another person in
  the same shot sits a head's width away or more, outside both tests. A wider gate lets the track jump
  to the next person across a scene cut the cut detector missed.
The largest face is not favoured inside the gate (the nearest wins), and faces outside it are ignored
however large: that is what keeps a second, larger face from taking over the subject's run.

The crop is a fixed square per clip (the paper crops around the face without alignment): centred on
the track's median centre, `crop_scale` times its median size, widened to hold every box of the run,
kept inside the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.faces import Face, prominent


def iou(a: tuple[float, ...] | np.ndarray, b: tuple[float, ...] | np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Run:
    """Frames [start, stop) of a segment where the main face is tracked."""

    start: int
    stop: int
    boxes: np.ndarray  # (stop - start, 4) interpolated face boxes
    multi_face_fraction: float  # of its sampled frames that show 2+ prominent faces

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Gate:
    """Which detection continues a track (see the module docstring for why these tests)."""

    min_iou: float
    centre_gate: float  # in track sides
    max_scale_change: float  # in side length, either way

    def distance(self, track: list[tuple[int, np.ndarray]], index: int, box: np.ndarray) -> float | None:
        """How far `box` at sample frame `index` is from the track, in track sides; None outside the gate."""
        last_index, last = track[-1]
        side = _side(last)
        if not 1 / self.max_scale_change <= _side(box) / side <= self.max_scale_change:
            return None
        expected = [last]
        if len(track) > 1:
            previous_index, previous = track[-2]
            velocity = (_centre(last) - _centre(previous)) / (last_index - previous_index)
            shift = velocity * (index - last_index)
            expected.append(last + np.concatenate([shift, shift]))
        distance = min(float(np.linalg.norm(_centre(box) - _centre(e))) for e in expected) / side
        overlaps = max(iou(e, box) for e in expected) >= self.min_iou
        return distance if overlaps or distance <= self.centre_gate else None


def face_runs(
    samples: dict[int, list[Face]],
    count: int,
    prominent_ratio: float,
    *,
    min_iou: float = 0.2,
    max_missed: int = 2,
    centre_gate: float = 0.5,
    max_scale_change: float = 1.5,
) -> list[Run]:
    """Runs of one segment of `count` frames from detections at sampled frame indices (0-based).

    Up to `max_missed` consecutive sampled frames without the tracked face inside the gate are bridged
    (2 by default: at 25 fps with the detector on every 5th frame, a face missed for up to 0.4 s, or
    0.6 s between two detections, which covers a detector's flicker but not a subject who has left).
    """
    gate = Gate(min_iou, centre_gate, max_scale_change)
    indices = sorted(samples)
    crowded = {index: len(prominent(samples[index], prominent_ratio)) > 1 for index in indices}
    runs = []
    position = 0
    while position < len(indices):
        track = _follow(samples, indices[position:], prominent_ratio, gate, max_missed)
        if not track:
            break
        runs.append(_run(track, indices, crowded, count))
        position = indices.index(track[-1][0]) + 1
    return runs


def _follow(
    samples: dict[int, list[Face]], indices: list[int], prominent_ratio: float, gate: Gate, max_missed: int
) -> list[tuple[int, np.ndarray]]:
    """(sample index, box) of one track: started on the first largest face, ended by too long a gap."""
    track: list[tuple[int, np.ndarray]] = []
    missed = 0
    for index in indices:
        if not track:
            faces = prominent(samples[index], prominent_ratio)
            if faces:
                track.append((index, np.array(max(faces, key=lambda f: f.area).box, float)))
            continue
        # the subject is followed among all faces: a larger newcomer must not push it out of `prominent`
        boxes = [np.array(face.box, float) for face in samples[index]]
        scored = [(distance, box) for box in boxes if (distance := gate.distance(track, index, box)) is not None]
        if scored:
            track.append((index, min(scored, key=lambda s: s[0])[1]))  # the nearest, not the largest
            missed = 0
        else:
            missed += 1
            if missed > max_missed:
                break
    return track


def _run(track: list[tuple[int, np.ndarray]], indices: list[int], crowded: dict[int, bool], count: int) -> Run:
    first, final = track[0][0], track[-1][0]
    # a run reaches out to the segment's edges when no sample there says the face is gone
    start = 0 if first == indices[0] else first
    stop = count if final == indices[-1] else final + 1
    frames = np.arange(start, stop)
    known = [index for index, _ in track]
    boxes = np.stack([np.interp(frames, known, [box[c] for _, box in track]) for c in range(4)], axis=1)
    sampled = [index for index in indices if start <= index < stop]
    return Run(start, stop, boxes, sum(crowded[index] for index in sampled) / len(sampled))


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


def _side(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def stable_crop(boxes: np.ndarray, crop_scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A fixed square (x0, y0, x1, y1) for a whole clip, inside a width x height frame."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    centre = np.median(centres, axis=0)
    reach = np.max(np.abs(centres - centre) + sides[:, None] / 2) * 2 * 1.05
    side = round(min(max(crop_scale * float(np.median(sides)), reach), width, height))
    x0 = round(min(max(centre[0] - side / 2, 0), width - side))
    y0 = round(min(max(centre[1] - side / 2, 0), height - side))
    return x0, y0, x0 + side, y0 + side
