"""The node's outputs, named and built in one place, so what the node publishes and what `fsmde process`
writes into a bag cannot drift, and whoever listens (the recorder, the demo, the RViz layouts, the
benchmarks) names the same topics.

Under the node's root (`~` for the node itself; /<namespace>/<node_name> from outside, /surround_depth
by default): <root>/<camera>/depth and depth_std (Image 32FC1, metres; REP-117 -Inf/+Inf out of range),
<root>/<camera>/camera_info (CameraInfo of the model's image size), <root>/points (PointCloud2 in the
rig's base frame, stamped with the set's latest image). /diagnostics goes beside them, outside the root.
`OutputWriter.messages` turns one set's result into these messages, each built only when sent (the
node builds only for a listener), with the publish_* switches respected.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from fsmde_ros.ros import codec
from fsmde_ros.service.params import NODE_NAME, OUTPUT_NAMESPACE

CAMERA_KINDS = {"depth": codec.IMAGE, "camera_info": codec.CAMERA_INFO, "depth_std": codec.IMAGE}  # publish order
CLOUD_KIND = "points"
DIAGNOSTICS_TOPIC = "/diagnostics"


def output_namespace(namespace: str = "", node_name: str = NODE_NAME) -> str:
    """Where the node's ~/ topics are: /<namespace>/<node_name> (REP-144 names; the defaults give /surround_depth)."""
    parts = [p for p in (namespace.strip("/"), (node_name or NODE_NAME).strip("/")) if p]
    return "/" + "/".join(parts)


@dataclasses.dataclass(frozen=True)
class OutputTopics:
    """The output topic names of a node for the rig's cameras (names), under `root` ('~' inside the node)."""

    cameras: tuple[str, ...]
    root: str = OUTPUT_NAMESPACE

    @classmethod
    def of(cls, rig, root: str = OUTPUT_NAMESPACE) -> "OutputTopics":
        return cls(tuple(rig.names), root)

    def camera(self, camera: str, kind: str) -> str:
        """<root>/<camera>/<kind>, kind one of CAMERA_KINDS."""
        if kind not in CAMERA_KINDS:
            raise KeyError(f"{kind!r} is not a camera output; they are {', '.join(CAMERA_KINDS)}")
        return f"{self.root}/{camera}/{kind}"

    def depth(self, camera: str) -> str:
        return self.camera(camera, "depth")

    def depth_std(self, camera: str) -> str:
        return self.camera(camera, "depth_std")

    def camera_info(self, camera: str) -> str:
        return self.camera(camera, "camera_info")

    @property
    def points(self) -> str:
        return f"{self.root}/{CLOUD_KIND}"

    def all(self) -> dict[str, str]:
        """Every output topic -> its message type ('pkg/msg/Name'): each camera's in CAMERA_KINDS order, then the cloud."""
        topics = {self.camera(cam, kind): msgtype for cam in self.cameras for kind, msgtype in CAMERA_KINDS.items()}
        topics[self.points] = codec.POINTCLOUD2
        return topics


@dataclasses.dataclass
class Outgoing:
    """One output message of a set, not built yet."""

    kind: str                   # depth, camera_info, depth_std or points (the node counts 'published <kind>')
    topic: str
    ns: int                     # its header stamp [ns] (a bag's log time)
    build: Callable[[], Any]    # the message, built when called


def set_stamp_ns(output) -> int:
    """A set's stamp [ns]: the latest of its images' (the cloud's stamp; the set's log time in a bag)."""
    return max(codec.header_ns(m.header) for m in output.messages if m is not None)


class OutputWriter:
    """A set's result -> its output messages, built by one side's MessageBuilder (rclpy or rosbags).

    width, height: the model's image size [px] (the depth images' and the CameraInfo's). A camera's CameraInfo
    is built once per intrinsics and reused with each set's header (a message is sent before the next is built)."""

    def __init__(self, build: codec.MessageBuilder, topics: OutputTopics, base_frame: str, width: int, height: int):
        self.build, self.topics, self.base_frame = build, topics, base_frame
        self.width, self.height = width, height
        self._info: dict[int, tuple] = {}  # camera -> (intrinsics key, CameraInfo)
        # camera -> its (depth, camera_info, depth_std) topics: fixed with the rig, not rebuilt each set
        self._camera_topics = [(topics.depth(n), topics.camera_info(n), topics.depth_std(n)) for n in topics.cameras]

    def messages(self, output, p: dict) -> list[Outgoing]:
        """The outputs of one set (service.surround_service.SetOutput) under the parameters p (publish_depth,
        publish_std, publish_cloud; read once, so a change lands between sets): per camera with an image, depth
        and camera_info, then depth_std; then the cloud when there is one."""
        result, build, out, latest = output.result, self.build, [], None
        for i, msg in enumerate(output.messages):
            if msg is None:
                continue
            header, ns = msg.header, codec.header_ns(msg.header)
            latest = ns if latest is None else max(latest, ns)  # the set's stamp (set_stamp_ns), for the cloud
            depth_topic, info_topic, std_topic = self._camera_topics[i]
            if p["publish_depth"]:
                out.append(Outgoing("depth", depth_topic, ns,
                                    lambda i=i, h=header: build.depth_image(result.depth[i], h)))
                out.append(Outgoing("camera_info", info_topic, ns,
                                    lambda i=i, h=header: self._camera_info(i, result.K[i], h)))
            if p["publish_std"]:
                out.append(Outgoing("depth_std", std_topic, ns,
                                    lambda i=i, h=header: build.depth_image(result.depth_std[i], h)))
        if p["publish_cloud"] and result.cloud is not None and latest is not None:
            out.append(Outgoing(CLOUD_KIND, self.topics.points, latest,
                                lambda: build.surround_cloud(result.cloud, build.header(latest, self.base_frame))))
        return out

    def _camera_info(self, i: int, K, header) -> Any:
        key = (K.tobytes(), self.width, self.height)
        cached = self._info.get(i)
        if cached is None or cached[0] != key:
            cached = self._info[i] = (key, self.build.camera_info(K, self.width, self.height, header))
        cached[1].header = header
        return cached[1]
