"""Geometry: cloud fusion, reprojection between cameras, shape checks."""
import numpy as np
import pytest

from fsmde_ros.geometry import cloud as fusion
from fsmde_ros.geometry import projection
from fsmde_ros.geometry.rig import load_rig

H, W = 48, 80


@pytest.fixture(scope="module")
def rig():
    return load_rig("nuscenes").resized(W, H)


def _ground_depth(cam, ground_z=0.0):
    """Analytic z-depth of the ground plane z = ground_z in base_link (inf above the horizon)."""
    rays_cam = projection.camera_rays(cam.K, cam.height, cam.width)
    R, t = cam.T_base_cam[:3, :3], cam.T_base_cam[:3, 3]
    dz = rays_cam @ R[2]  # base-frame z component of each ray (per unit of optical z)
    with np.errstate(divide="ignore"):
        s = (ground_z - t[2]) / dz
    return np.where(s > 0, s, np.inf)


def test_fused_cloud_of_ground_lies_on_the_ground(rig):
    depths = np.stack([_ground_depth(c) for c in rig.cameras]).astype(np.float32)
    images = np.zeros((6, H, W, 3), np.uint8)
    images[..., 0] = np.arange(6, dtype=np.uint8)[:, None, None] * 40
    cloud = fusion.fuse_cloud(depths, rig.K, rig.T_base_cam, images=images, stride=2, max_depth=50.0)
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
    full = fusion.fuse_cloud(depths, rig.K, rig.T_base_cam, max_depth=80.0)
    assert len(full) == 6 * H * W - 3 * 5 * W
    strided = fusion.fuse_cloud(depths, rig.K, rig.T_base_cam, stride=4, max_depth=80.0)
    assert len(strided) < len(full) / 10
    filtered = fusion.fuse_cloud(depths, rig.K, rig.T_base_cam, max_depth=80.0, depth_std=std, max_std_ratio=0.1)
    assert len(filtered) == len(full) - 10 * W
    assert np.isfinite(full.xyz).all() and full.xyz.dtype == np.float32


def test_nearest_axis_overlap_hands_each_direction_to_one_camera(rig):
    """Two cameras that disagree about a shared surface draw it twice ('all'); 'nearest_axis' keeps each
    point from the camera that sees it nearer its optical axis, so the seam is a boundary, not a double wall."""
    depths = np.stack([_ground_depth(c) for c in rig.cameras]).astype(np.float32)
    depths[1] *= 1.3  # camera 1 overestimates: its ground lies below the others'
    both = fusion.fuse_cloud(depths, rig.K, rig.T_base_cam, max_depth=60.0)
    one = fusion.CloudFuser(rig.T_base_cam, overlap="nearest_axis")(depths, rig.K, max_depth=60.0)
    assert 0 < len(one) < len(both)
    for i, cam in enumerate(rig.cameras):  # every camera keeps the centre of its view
        assert (one.camera == i).sum() > 0.3 * (both.camera == i).sum()
    # each kept point is seen by no other camera nearer that camera's axis
    for i, j in rig.neighbours:
        for a, b in ((i, j), (j, i)):
            pts = one.xyz[one.camera == a]
            ca, cb = rig.cameras[a], rig.cameras[b]
            pa = projection.transform_points(projection.invert_transform(ca.T_base_cam), pts)
            pb = projection.transform_points(projection.invert_transform(cb.T_base_cam), pts)
            uv, z = projection.project(pb, cb.K)
            seen = (z > 0) & projection.in_image(uv, W, H)
            cos_a = pa[:, 2] / np.linalg.norm(pa, axis=1)
            cos_b = pb[:, 2] / np.linalg.norm(pb, axis=1)
            assert np.all(cos_a[seen] >= cos_b[seen] - 1e-5)
    # the doubled ground of the overlaps is gone: near camera 1's ground (z = 0 * 1.3 is not 0) fewer points
    # of its neighbours' ground remain where camera 1 also drew it
    off_ground = lambda c: np.abs(c.xyz[:, 2]) > 0.05  # noqa: E731 - camera 1's points, mis-scaled
    assert off_ground(one).sum() < off_ground(both).sum()
    # an absent camera (no depth at all) does not take directions away from its neighbours
    depths[2] = np.nan
    partial = fusion.CloudFuser(rig.T_base_cam, overlap="nearest_axis")(depths, rig.K, max_depth=60.0)
    beside = [j if i == 2 else i for i, j in rig.neighbours if 2 in (i, j)]
    assert beside and (partial.camera == 2).sum() == 0
    for k in beside:  # its neighbours keep the overlap they had handed to it
        assert (partial.camera == k).sum() > (one.camera == k).sum()
    with pytest.raises(ValueError, match="overlap must be"):
        fusion.CloudFuser(rig.T_base_cam, overlap="blend")


def test_reprojected_depth_agrees_in_the_overlap(rig):
    depths = np.stack([_ground_depth(c) for c in rig.cameras]).astype(np.float32)
    ci, cj = rig.cameras[0], rig.cameras[1]
    warped = projection.reproject_depth(np.where(depths[0] < 60, depths[0], np.nan), ci.K, ci.T_base_cam,
                                      cj.K, cj.T_base_cam, (W, H))
    hit = np.isfinite(warped)
    assert hit.sum() > 20
    assert np.all(np.nonzero(hit)[1] < W / 2), "camera 0's ground appears on the left of its right neighbour"
    rel = np.abs(warped[hit] - depths[1][hit]) / depths[1][hit]
    assert np.median(rel) < 0.03


def test_bad_shapes_are_clear_errors(rig):
    with pytest.raises(ValueError, match="depths must be"):
        fusion.fuse_cloud(np.zeros((H, W)), rig.K, rig.T_base_cam)
    with pytest.raises(ValueError, match="K"):
        fusion.fuse_cloud(np.zeros((5, H, W)), rig.K, rig.T_base_cam)
    with pytest.raises(ValueError, match="stride"):
        fusion.fuse_cloud(np.zeros((6, H, W)), rig.K, rig.T_base_cam, stride=0)
    with pytest.raises(ValueError):
        projection.transform_points(np.eye(3), np.zeros((4, 3)))
