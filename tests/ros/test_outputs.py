"""The one output writer: the node's topic names and one set's messages, with the publish_* switches.
The node and `fsmde process` both go through it (tests/ros/test_service_parity.py compares what they send)."""
import types

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="needs rosbags (the `ros` extra)")
from fsmde_ros.geometry.cloud import SurroundCloud  # noqa: E402
from fsmde_ros.geometry.rig import load_rig  # noqa: E402
from fsmde_ros.ros import codec  # noqa: E402
from fsmde_ros.ros.outputs import OutputTopics, OutputWriter, output_namespace  # noqa: E402
from fsmde_ros.service.surround_service import SetOutput  # noqa: E402

H, W = 4, 6
BUILD = codec.MessageBuilder.bags()
RIG = load_rig("nuscenes")
ALL = {"publish_depth": True, "publish_std": True, "publish_cloud": True}


def _set(stamps_ns, K_scale=1.0, cloud=True) -> SetOutput:
    """A set whose camera i has depth i+1 m and std (i+1)/10 m; stamps_ns[i] None: camera i had no image."""
    V = len(RIG)
    K = np.tile(np.array([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]]) * [[K_scale], [K_scale], [1]], (V, 1, 1))
    result = types.SimpleNamespace(
        depth=np.arange(1, V + 1, dtype=np.float32)[:, None, None] * np.ones((V, H, W), np.float32),
        depth_std=np.arange(1, V + 1, dtype=np.float32)[:, None, None] * np.full((V, H, W), 0.1, np.float32), K=K,
        cloud=SurroundCloud(xyz=np.ones((3, 3), np.float32), camera=np.zeros(3, np.uint8)) if cloud else None)
    messages = [None if ns is None else types.SimpleNamespace(header=BUILD.header(ns, RIG.cameras[i].frame_id))
                for i, ns in enumerate(stamps_ns)]
    return SetOutput(result=result, messages=messages, stamp=max(ns for ns in stamps_ns if ns is not None) * 1e-9)


def test_topic_names_follow_the_nodes_namespace_and_name():
    assert output_namespace() == "/surround_depth" and output_namespace("/trailer/", "rear") == "/trailer/rear"
    topics = OutputTopics.of(RIG)
    assert topics.depth("CAM_FRONT") == "/surround_depth/CAM_FRONT/depth" and topics.points == "/surround_depth/points"
    assert OutputTopics.of(RIG, "~").camera_info("CAM_BACK") == "~/CAM_BACK/camera_info"
    assert topics.all() == {**{f"/surround_depth/{n}/{k}": t for n in RIG.names for k, t in
                               (("depth", codec.IMAGE), ("camera_info", codec.CAMERA_INFO), ("depth_std", codec.IMAGE))},
                            "/surround_depth/points": codec.POINTCLOUD2}
    with pytest.raises(KeyError, match="'points' is not a camera output"):
        topics.camera("CAM_FRONT", "points")


def test_one_set_gives_every_output_with_its_cameras_stamp_and_the_cloud_at_the_latest():
    stamps = [1_000_000_000 + 8_300_000 * i for i in range(len(RIG))]
    writer = OutputWriter(BUILD, OutputTopics.of(RIG), RIG.base_frame, W, H)
    out = writer.messages(_set(stamps), ALL)
    assert [(o.kind, o.topic) for o in out] == [(k, f"/surround_depth/{n}/{k}") for n in RIG.names
                                                for k in ("depth", "camera_info", "depth_std")] + [
                                                   ("points", "/surround_depth/points")]
    by_topic = {o.topic: (o.ns, o.build()) for o in out}
    for i, cam in enumerate(RIG.cameras):
        ns, depth = by_topic[f"/surround_depth/{cam.name}/depth"]
        _, std = by_topic[f"/surround_depth/{cam.name}/depth_std"]
        _, info = by_topic[f"/surround_depth/{cam.name}/camera_info"]
        assert ns == stamps[i] == codec.header_ns(depth.header) == codec.header_ns(info.header)
        assert depth.header.frame_id == std.header.frame_id == info.header.frame_id == cam.frame_id
        np.testing.assert_array_equal(codec.image_to_depth(depth), np.full((H, W), i + 1, np.float32))
        np.testing.assert_allclose(codec.image_to_depth(std), np.full((H, W), (i + 1) / 10), rtol=1e-6)
        assert (info.width, info.height) == (W, H) and info.k[0] == 50.0
    ns, cloud = by_topic["/surround_depth/points"]
    assert ns == max(stamps) == codec.header_ns(cloud.header) and cloud.header.frame_id == RIG.base_frame
    assert len(codec.cloud_array(cloud)) == 3


def test_the_publish_switches_and_a_missing_camera_leave_their_outputs_out():
    stamps = [1_000_000_000] * len(RIG)
    stamps[2] = None
    writer = OutputWriter(BUILD, OutputTopics.of(RIG), RIG.base_frame, W, H)

    def kinds(p, **kw):
        return {(o.kind, o.topic.split("/")[2]) for o in writer.messages(_set(stamps, **kw), p)}

    assert ("depth", RIG.names[2]) not in kinds(ALL) and ("depth", RIG.names[1]) in kinds(ALL)
    assert {k for k, _ in kinds({**ALL, "publish_std": False})} == {"depth", "camera_info", "points"}
    assert {k for k, _ in kinds({**ALL, "publish_depth": False})} == {"depth_std", "points"}
    assert {k for k, _ in kinds({**ALL, "publish_cloud": False})} == {"depth", "camera_info", "depth_std"}
    assert {k for k, _ in kinds(ALL, cloud=False)} == {"depth", "camera_info", "depth_std"}


def test_camera_info_is_rebuilt_when_the_intrinsics_change_and_carries_each_sets_header():
    writer = OutputWriter(BUILD, OutputTopics.of(RIG), RIG.base_frame, W, H)

    def info(out):  # camera 0's
        return next(o for o in out if o.kind == "camera_info").build()

    first = info(writer.messages(_set([1_000] * len(RIG)), ALL))
    assert codec.header_ns(first.header) == 1_000
    second = info(writer.messages(_set([2_000] * len(RIG)), ALL))
    assert codec.header_ns(second.header) == 2_000 and second.k[0] == 50.0
    third = info(writer.messages(_set([3_000] * len(RIG), K_scale=2.0), ALL))
    assert codec.header_ns(third.header) == 3_000 and third.k[0] == 100.0
