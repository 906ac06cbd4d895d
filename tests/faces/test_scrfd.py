"""The SCRFD backend's decoding, letterboxing and NMS, run by real onnxruntime on a real ONNX graph.

insightface's model packs cannot be downloaded here, so the test creates the weights itself: a tiny
network with SCRFD's exact signature (input `input.1`, 1x3xHxW; nine outputs: scores (N, 1), box
distances (N, 4), keypoint offsets (N, 10) for strides 8, 16, 32 in insightface's order, N = cells x 2
anchors, cells row by row) whose heads each light up on one colour. Each head averages its stride's
cells, so a pure-colour square covering exactly one cell is "a face" at that cell, with box distances
and keypoint offsets that the test sets as biases; the expected boxes follow from the square's place.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.faces import BACKENDS, open_detector
from pipeline.faces.scrfd_backend import DEFAULT_MODEL_DIR, ScrfdDetector

STRIDES = (8, 16, 32)
CHANNEL = {8: 0, 16: 1, 32: 2}  # the stride-8 head sees red faces, stride 16 green, stride 32 blue
FIRING_ANCHOR = {8: 0, 16: 0, 32: 1}  # stride 32 fires on its second anchor: checks the anchor order
GAIN = 10.0  # logit = GAIN * (channel mean - 0.5) with the input normalised to [-1, 1]
# per stride: (left, top, right, bottom) distances and 5 keypoint offsets, in units of the stride
DISTANCES = {8: (2.0, 3.0, 2.5, 3.5), 16: (3.0, 4.0, 3.0, 5.0), 32: (1.5, 2.0, 2.0, 2.5)}
OFFSETS = {
    stride: np.array([[-0.5, -0.75], [0.5, -0.75], [0.0, 0.0], [-0.25, 0.5], [0.25, 0.5]]) * scale
    for stride, scale in ((8, 1.0), (16, 2.0), (32, 1.0))
}


def write_scrfd(folder: Path, size: int | None = None, name: str = "det_10g.onnx", keypoints: bool = True) -> Path:
    """An SCRFD-signature ONNX file; `size` None gives dynamic height and width like insightface's packs."""
    nodes, weights = [], []
    outputs: dict[str, list[onnx.ValueInfoProto]] = {"score": [], "bbox": [], "kps": []}
    for stride in STRIDES:
        pooled = f"pool{stride}"
        nodes.append(
            helper.make_node("AveragePool", ["input.1"], [pooled], kernel_shape=[stride] * 2, strides=[stride] * 2)
        )
        firing, other = FIRING_ANCHOR[stride], 1 - FIRING_ANCHOR[stride]
        score_w = np.zeros((2, 3, 1, 1), np.float32)
        score_w[firing, CHANNEL[stride]] = GAIN
        score_b = np.array([-GAIN * 0.5 if anchor == firing else -20.0 for anchor in range(2)], np.float32)
        box_b = np.zeros((2, 4), np.float32)
        box_b[firing], box_b[other] = DISTANCES[stride], 9.0  # the other anchor's box shows if anchors mix
        kps_b = np.zeros((2, 10), np.float32)
        kps_b[firing] = OFFSETS[stride].reshape(-1)
        heads = [("score", score_w, score_b, 1), ("bbox", None, box_b, 4)]
        heads += [("kps", None, kps_b, 10)] if keypoints else []
        for head, weight, bias, width in heads:
            prefix = f"{head}{stride}"
            weight = np.zeros((2 * width, 3, 1, 1), np.float32) if weight is None else weight
            weights += [
                numpy_helper.from_array(weight, f"{prefix}_w"),
                numpy_helper.from_array(bias.reshape(-1), f"{prefix}_b"),
                numpy_helper.from_array(np.array([-1, width], np.int64), f"{prefix}_shape"),
            ]
            nodes.append(helper.make_node("Conv", [pooled, f"{prefix}_w", f"{prefix}_b"], [f"{prefix}_conv"]))
            last = f"{prefix}_conv"
            if head == "score":
                nodes.append(helper.make_node("Sigmoid", [last], [f"{prefix}_sigmoid"]))
                last = f"{prefix}_sigmoid"
            nodes.append(helper.make_node("Transpose", [last], [f"{prefix}_nhwc"], perm=[0, 2, 3, 1]))
            out = str(448 + len(nodes))  # numeric names, as in insightface's exports
            nodes.append(helper.make_node("Reshape", [f"{prefix}_nhwc", f"{prefix}_shape"], [out]))
            outputs[head].append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [f"anchors{stride}", width]))
    dims = [1, 3, size, size] if size else [1, 3, "height", "width"]
    graph = helper.make_graph(
        nodes,
        "scrfd_signature",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, dims)],
        outputs["score"] + outputs["bbox"] + outputs["kps"],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    path = folder / name
    onnx.save(model, str(path))
    return path


def paint(image: np.ndarray, corner: tuple[int, int], side: int, stride: int, level: int) -> None:
    """A pure-colour square, in image pixels, that the head of `stride` reads as a face."""
    x, y = corner
    image[y : y + side, x : x + side, CHANNEL[stride]] = level


def expected(anchor: tuple[float, float], stride: int, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Box and keypoints in image pixels for a face whose anchor (cell corner, image pixels) is `anchor`."""
    left, top, right, bottom = np.array(DISTANCES[stride]) * stride / factor
    x, y = anchor
    return np.array([x - left, y - top, x + right, y + bottom]), np.array(anchor) + OFFSETS[stride] * stride / factor


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("buffalo_l")
    write_scrfd(folder)
    return folder


def test_decodes_faces_at_every_stride_from_a_letterboxed_frame(pack: Path) -> None:
    # 1280x720 letterboxes to 640x360 at factor 0.5: an image square of 2*stride px is one input cell
    image = np.zeros((720, 1280, 3), np.uint8)
    faces_at = {16: (320, 160, 255), 8: (960, 480, 230), 32: (192, 448, 210)}  # anchor x, y and colour level
    for stride, (x, y, level) in faces_at.items():
        paint(image, (x, y), 2 * stride, stride, level)
    detector = open_detector("insightface", model_dir=pack)
    faces = detector.detect(image)
    detector.close()

    assert [round(face.score, 3) for face in faces] == sorted((round(f.score, 3) for f in faces), reverse=True)
    assert len(faces) == 3
    for face, stride in zip(faces, (16, 8, 32), strict=True):  # brighter squares score higher
        x, y, level = faces_at[stride]
        box, points = expected((x, y), stride, 0.5)
        np.testing.assert_allclose(face.box, box, atol=1e-3)
        np.testing.assert_allclose(face.keypoints, points, atol=1e-3)
        normalised = (level - 127.5) / 128
        assert face.score == pytest.approx(1 / (1 + np.exp(-GAIN * (normalised - 0.5))), abs=1e-5)
        assert face.keypoints.shape == (5, 2) and face.keypoints.dtype == np.float32


def test_nms_keeps_the_best_of_overlapping_boxes(pack: Path) -> None:
    image = np.zeros((640, 640, 3), np.uint8)
    paint(image, (160, 160), 16, 16, 255)
    paint(image, (176, 160), 16, 16, 200)  # the next cell: the same box shifted by 16 px, IoU 0.71
    faces = ScrfdDetector(pack).detect(image)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, expected((160, 160), 16, 1.0)[0], atol=1e-3)
    both = ScrfdDetector(pack, nms_iou=0.8).detect(image)
    assert len(both) == 2 and both[0].score > both[1].score > 0.5
    assert ScrfdDetector(pack, min_score=0.9).detect(image)[0].score > 0.9
    assert len(ScrfdDetector(pack, min_score=0.9, nms_iou=0.8).detect(image)) == 1  # the weaker one is below 0.9
    assert ScrfdDetector(pack).detect(np.zeros((100, 100, 3), np.uint8)) == []


def test_fixed_input_size_is_read_from_the_model(tmp_path: Path) -> None:
    write_scrfd(tmp_path, size=320, name="det_500m.onnx")
    detector = ScrfdDetector(tmp_path, threads=2)
    assert detector.input_size == (320, 320) and detector.path.name == "det_500m.onnx"
    assert detector._session.get_session_options().intra_op_num_threads == 2
    image = np.zeros((480, 640, 3), np.uint8)  # factor 0.5 into 320x240
    paint(image, (320, 192), 32, 16, 255)
    (face,) = detector.detect(image)
    np.testing.assert_allclose(face.box, expected((320, 192), 16, 0.5)[0], atol=1e-3)


def test_missing_model_names_the_file_the_pack_and_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        open_detector("insightface", model_dir=tmp_path / "buffalo_l")
    message = str(missing.value)
    assert f"{tmp_path / 'buffalo_l' / 'det_10g.onnx'}" in message
    assert "model pack buffalo_l" in message and "det_500m.onnx (model pack buffalo_s or buffalo_sc)" in message
    assert "insightface's model zoo" in message and "nothing is downloaded" in message
    with pytest.raises(FileNotFoundError, match=re.escape("det_2.5g.onnx (model pack buffalo_m)")):
        ScrfdDetector(tmp_path, model_file="det_2.5g.onnx")
    assert DEFAULT_MODEL_DIR.parts[-3:] == (".insightface", "models", "buffalo_l")


def test_a_model_without_keypoint_outputs_is_refused(tmp_path: Path) -> None:
    write_scrfd(tmp_path, keypoints=False)
    with pytest.raises(ValueError, match="found 1 and 6"):
        ScrfdDetector(tmp_path)


def test_backends_and_input_checks(pack: Path) -> None:
    assert BACKENDS == ("mediapipe", "insightface")
    with pytest.raises(ValueError, match="unknown face backend 'dlib'"):
        open_detector("dlib")
    with pytest.raises(ValueError, match="RGB uint8"):
        ScrfdDetector(pack).detect(np.zeros((64, 64), np.uint8))
