"""Geometry: cloud fusion, reprojection between cameras, shape checks."""
import numpy as np
import pytest

from fsmde_ros import geometry
from fsmde_ros.rig import load_rig

H, W = 48, 80


@pytest.fixture(scope="module")
def rig():
    return load_rig("nuscenes").resized(W, H)


def _ground_depth(cam, ground_z=0.0):
    """Analytic z-depth of the ground plane z = ground_z in base_link (inf above the horizon)."""
    rays_cam = geometry.camera_rays(cam.K, cam.height, cam.width)
    R, t = cam.T_base_cam[:3, :3], cam.T_base_cam[:3, 3]
    dz = rays_cam @ R[2]  # base-frame z component of each ray (per unit of optical z)
    with np.errstate(divide="ignore"):
        s = (ground_z - t[2]) / dz
    return np.where(s > 0, s, np.inf)


def test_fused_cloud_of_ground_lies_on_the_ground(rig):
    depths = np.stack([_ground_depth(c) for c in rig.cameras]).astype(np.float32)
    images = np.zeros((6, H, W, 3), np.uint8)
    images[..., 0] = np.arange(6, dtype=np.uint8)[:, None, None] * 40
    cloud = geometry.fuse_cloud(depths, rig.K, rig.T_base_cam, images=images, stride=2, max_depth=50.0)
    assert len(cloud) > 0
    np.testing.assert_allclose(cloud.xyz[:, 2], 0.0, atol=1e-3)
    # every camera contributes, and its points lie in the direction it looks
    for i, cam in enumerate(rig.cameras):
        pts = cloud.xyz[cloud.camera == i]
        assert len(pts) > 0
        heading = np.degrees(np.arctan2(pts[:, 1] - cam.T_base_cam[1, 3], pts[:, 0] - cam.T_base_cam[0, 3]))
        off = (heading - cam.yaw_deg + 180) % 360 - 180
        assert np.all(np.abs(off) < cam.horizontal_fov_deg / 2 + 1)
        assert np.all(cloud.rgb[cloud.camera == i, 0] == i * 40)
        # max_depth bounds the z-depth along each camera's optical axis
        z = (pts - cam.T_base_cam[:3, 3]) @ cam.T_base_cam[:3, 2]
        assert z.max() <= 50.0 + 1e-3


def test_fuse_cloud_stride_bounds_and_uncertainty_filter(rig):
    depths = np.full((6, H, W), 10.0, np.float32)
    depths[0, :5] = np.nan  # REP-118 invalid
    depths[1, :5] = np.inf  # too far
    depths[2, :5] = 200.0  # beyond max_depth
    std = np.full_like(depths, 0.5)
    std[3, :10] = 5.0  # uncertain
    full = geometry.fuse_cloud(depths, rig.K, rig.T_base_cam, max_depth=80.0)
    assert len(full) == 6 * H * W - 3 * 5 * W
    strided = geometry.fuse_cloud(depths, rig.K, rig.T_base_cam, stride=4, max_depth=80.0)
    assert len(strided) < len(full) / 10
    filtered = geometry.fuse_cloud(depths, rig.K, rig.T_base_cam, max_depth=80.0, depth_std=std, max_std_ratio=0.1)
    assert len(filtered) == len(full) - 10 * W
    assert np.isfinite(full.xyz).all() and full.xyz.dtype == np.float32


def test_reprojected_depth_agrees_in_the_overlap(rig):
    depths = np.stack([_ground_depth(c) for c in rig.cameras]).astype(np.float32)
    ci, cj = rig.cameras[0], rig.cameras[1]
    warped = geometry.reproject_depth(np.where(depths[0] < 60, depths[0], np.nan), ci.K, ci.T_base_cam,
                                      cj.K, cj.T_base_cam, (W, H))
    hit = np.isfinite(warped)
    assert hit.sum() > 20
    assert np.all(np.nonzero(hit)[1] < W / 2), "camera 0's ground appears on the left of its right neighbour"
    rel = np.abs(warped[hit] - depths[1][hit]) / depths[1][hit]
    assert np.median(rel) < 0.03


def test_bad_shapes_are_clear_errors(rig):
    with pytest.raises(ValueError, match="depths must be"):
        geometry.fuse_cloud(np.zeros((H, W)), rig.K, rig.T_base_cam)
    with pytest.raises(ValueError, match="K"):
        geometry.fuse_cloud(np.zeros((5, H, W)), rig.K, rig.T_base_cam)
    with pytest.raises(ValueError, match="stride"):
        geometry.fuse_cloud(np.zeros((6, H, W)), rig.K, rig.T_base_cam, stride=0)
    with pytest.raises(ValueError):
        geometry.transform_points(np.eye(3), np.zeros((4, 3)))
