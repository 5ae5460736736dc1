"""Camera mounts at run time, ROS-free: from TF where the vehicle publishes them, checked against the rig YAML.

A vehicle's TF tree holds the camera mounts (its URDF, its calibration); the rig YAML holds what the model
was set up with. `CameraMounts` asks a lookup (the node's tf2 buffer: base_frame <- the frame the camera's
images carry) for each camera, uses what TF says, and warns once per camera when TF and the YAML disagree by
more than MOUNT_TOLERANCE_M / MOUNT_TOLERANCE_DEG (the cloud follows TF; the YAML is what the RViz layout and
a bag conversion use). Where TF has no answer for a camera, its YAML mount is used and that is said once;
without a lookup at all (no tf2_ros: the wheels install, or `fsmde process`) the YAML is used, said once.
Images whose header.frame_id is not the rig's frame for that camera are warned about once per camera: the
TF lookup then follows the images' frame, which is what the vehicle calls that camera.
Poses are T_base_cam [V,4,4] float64 (camera optical frame -> base frame), as CameraRig.T_base_cam.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from fsmde_ros.geometry.rig import CameraRig

MOUNT_TOLERANCE_M = 0.05  # TF and YAML mounts further apart than this are warned about ...
MOUNT_TOLERANCE_DEG = 1.0  # ... or rotated against each other by more than this

# (base_frame, camera frame) -> T_base_cam [4,4], or None when TF has no answer (yet)
MountLookup = Callable[[str, str], "np.ndarray | None"]


def mount_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(distance [m], rotation angle [deg]) between two poses [4,4]."""
    dist = float(np.linalg.norm(a[:3, 3] - b[:3, 3]))
    cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    return dist, float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


class CameraMounts:
    """The mounts in use (see the module doc): `poses` [V,4,4], refreshed from TF by `refresh`."""

    def __init__(self, rig: CameraRig, lookup: MountLookup | None = None, warn: Callable[[str], None] = print,
                 info: Callable[[str], None] = print):
        self.rig, self.lookup, self.warn, self.info = rig, lookup, warn, info
        self.yaml = rig.T_base_cam.copy()
        self.poses = self.yaml.copy()
        self.frames = [c.frame_id for c in rig.cameras]  # the TF frame of each camera (its images' frame_id)
        self._said: set[tuple[str, int]] = set()
        if lookup is None:
            self.info("camera mounts from the rig YAML (no TF lookup here: tf2_ros comes with a ROS 2 installation)")

    def _once(self, kind: str, i: int, text: str) -> None:
        if (kind, i) not in self._said:
            self._said.add((kind, i))
            self.warn(text)

    def on_frame_id(self, i: int, frame_id: str) -> None:
        """Camera i's images carry `frame_id` (empty: none given): a frame other than the rig's is said once and
        followed for the TF lookups."""
        if not frame_id or frame_id == self.frames[i]:
            return
        cam = self.rig.cameras[i]
        self._once("frame", i, f"camera {cam.name}: images arrive in frame '{frame_id}', the rig says "
                               f"'{cam.frame_id}'; mounts are looked up for '{frame_id}' (fix the rig YAML or the driver's "
                               "frame_id so that they agree)")
        self.frames[i] = frame_id

    def refresh(self) -> bool:
        """Ask TF for every camera's mount; True when a pose in use changed (the caller then passes the new poses on)."""
        if self.lookup is None:
            return False
        changed = False
        base = self.rig.base_frame
        for i, cam in enumerate(self.rig.cameras):
            T = self.lookup(base, self.frames[i])
            if T is None:
                self._once("no_tf", i, f"camera {cam.name}: TF has no transform {base} <- {self.frames[i]}; using the "
                                       "rig YAML's mount (publish the camera's TF, or set publish_rig_tf:=true)")
                T = self.yaml[i]
            else:
                T = np.asarray(T, dtype=np.float64)
                dist, angle = mount_difference(T, self.yaml[i])
                if dist > MOUNT_TOLERANCE_M or angle > MOUNT_TOLERANCE_DEG:
                    self._once("disagree", i, f"camera {cam.name}: TF's mount differs from the rig YAML's by {dist:.3f} m "
                                              f"and {angle:.2f} deg; the cloud follows TF (check the rig YAML against the "
                                              "vehicle's calibration)")
            if not np.allclose(T, self.poses[i], atol=1e-9):
                self.poses[i] = T
                changed = True
        return changed
