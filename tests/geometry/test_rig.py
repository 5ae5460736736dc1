"""Camera rigs: presets load, geometry is REP-103 and ring-ordered, bad presets fail clearly."""
import numpy as np
import pytest
import yaml

from fsmde_ros.geometry import projection
from fsmde_ros.geometry.rig import (
    RigError,
    available_rigs,
    load_rig,
    quaternion_from_rotation,
    rig_from_dict,
)

PRESETS = ("ddad", "nuscenes")
EXPECTED_SIZE = {"ddad": (1936, 1216), "nuscenes": (1600, 900)}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_six_cameras_in_ring_order(name):
    rig = load_rig(name)
    assert len(rig) == 6 and name in available_rigs()
    assert all((c.width, c.height) == EXPECTED_SIZE[name] for c in rig.cameras)
    assert rig.neighbours == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)]
    yaws = np.array([c.yaw_deg for c in rig.cameras])
    assert abs(yaws[0]) < 2, "the first camera looks forward"
    # clockwise seen from above: heading decreases monotonically around the ring
    steps = (np.diff(np.r_[yaws, yaws[0] - 360]) + 180) % 360 - 180
    assert np.all(steps < 0), f"not clockwise: {yaws}"
    for c in rig.cameras:
        R = c.T_base_cam[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(R) == pytest.approx(1.0)
        assert R[2, 1] < -0.95, "image y (down) must point down in base_link (z up)"
        assert 1.0 < c.T_base_cam[2, 3] < 2.5, "cameras are mounted on the roof"


def test_nuscenes_camera_order_matches_dataset_layout():
    rig = load_rig("nuscenes")
    assert rig.names == ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT"]
    right = rig.cameras[rig.index("CAM_FRONT_RIGHT")]
    assert right.T_base_cam[1, 3] < 0, "right cameras sit at negative y (REP-103: y left)"


@pytest.mark.parametrize("name", PRESETS)
def test_project_unproject_round_trip(name):
    rig = load_rig(name).resized(320, 192)
    rng = np.random.default_rng(0)
    for cam in rig.cameras:
        depth = rng.uniform(1, 100, size=(cam.height, cam.width))
        pts = projection.unproject(depth, cam.K)
        uv, z = projection.project(pts, cam.K)
        u, v = projection.pixel_grid(cam.height, cam.width)
        np.testing.assert_allclose(uv[..., 0], u, atol=1e-9)
        np.testing.assert_allclose(uv[..., 1], v, atol=1e-9)
        np.testing.assert_allclose(z, depth)
        # through base_link and back
        back = projection.transform_points(projection.invert_transform(cam.T_base_cam),
                                         projection.transform_points(cam.T_base_cam, pts))
        np.testing.assert_allclose(back, pts, atol=1e-9)


@pytest.mark.parametrize("name", PRESETS)
def test_neighbours_really_overlap(name):
    """A point seen by camera i near its edge towards camera i+1 is seen by camera i+1."""
    rig = load_rig(name).resized(320, 192)
    for i, j in rig.neighbours:
        ci, cj = rig.cameras[i], rig.cameras[j]
        # clockwise ring: camera i+1 is to the right of camera i, so use i's right edge
        u, v, depth = ci.width - 3, ci.height // 2, 20.0
        p_cam = projection.unproject(np.full((ci.height, ci.width), depth), ci.K)[v, u]
        p_base = projection.transform_points(ci.T_base_cam, p_cam)
        uv, z = projection.project(projection.transform_points(projection.invert_transform(cj.T_base_cam), p_base), cj.K)
        assert z > 0 and projection.in_image(uv, cj.width, cj.height), f"{ci.name} edge not seen by {cj.name}"
        assert uv[0] < cj.width / 2, "it appears on the left side of the right-hand neighbour"
        mask = projection.overlap_mask(ci.K, ci.T_base_cam, (ci.width, ci.height),
                                     cj.K, cj.T_base_cam, (cj.width, cj.height))
        assert mask[:, -1].any() and not mask[:, 0].any()
        assert 0.01 < mask.mean() < 0.5


def test_resized_scales_intrinsics_with_pixel_centre_convention():
    cam = load_rig("ddad").cameras[0]
    small = cam.resized(cam.width // 4, cam.height // 4)
    assert small.fx == pytest.approx(cam.fx / 4)
    # the principal point stays at the same place of the image: (c + 0.5) scales with the size
    assert (small.K[0, 2] + 0.5) / small.width == pytest.approx((cam.K[0, 2] + 0.5) / cam.width)
    assert (small.K[1, 2] + 0.5) / small.height == pytest.approx((cam.K[1, 2] + 0.5) / cam.height)
    # the field of view does not change
    assert small.horizontal_fov_deg == pytest.approx(cam.horizontal_fov_deg, abs=1e-6)
    # a 3-D point lands on the scaled pixel: u' + 0.5 = s (u + 0.5)
    p = np.array([2.0, 0.5, 30.0])
    uv_full, _ = projection.project(p, cam.K)
    uv_small, _ = projection.project(p, small.K)
    np.testing.assert_allclose(uv_small + 0.5, (uv_full + 0.5) / 4, atol=1e-9)


def test_quaternion_mount_equals_rpy_mount():
    rig = load_rig("nuscenes")
    data = yaml.safe_load(open(rig.source))
    for cam_dict, cam in zip(data["cameras"], rig.cameras):
        cam_dict["mount"] = {"xyz": cam_dict["mount"]["xyz"],
                             "quat_xyzw": quaternion_from_rotation(cam.T_base_cam[:3, :3]).tolist()}
    rig_q = rig_from_dict(data, "quat.yaml")
    np.testing.assert_allclose(rig_q.T_base_cam, rig.T_base_cam, atol=1e-9)


def test_missing_preset_lists_the_valid_ones():
    with pytest.raises(RigError, match="ddad, nuscenes"):
        load_rig("kitti")


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["cameras"][2].pop("intrinsics"), "cameras[2].intrinsics"),
    (lambda d: d["cameras"][1]["mount"].update(xyz=[1.0, 2.0]), "cameras[1].mount.xyz"),
    (lambda d: d["cameras"][0].update(width=-5), "cameras[0].width"),
    (lambda d: d["cameras"][3]["intrinsics"].update(fx="wide"), "cameras[3].intrinsics.fx"),
    (lambda d: d["cameras"][4].update(name=d["cameras"][0]["name"]), "unique"),
    (lambda d: d.pop("cameras"), "cameras"),
])
def test_malformed_preset_names_file_and_field(tmp_path, mutate, field):
    data = yaml.safe_load(open(load_rig("ddad").source))
    mutate(data)
    path = tmp_path / "broken_rig.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RigError) as err:
        load_rig(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_strided_camera_maps_pixel_j_to_original_pixel_k_times_j():
    cam = load_rig("nuscenes").resized(320, 192).cameras[1]
    from fsmde_ros.geometry.rig import strided_camera

    sub = strided_camera(cam, 2)
    assert (sub.width, sub.height) == (160, 96)
    p = np.array([3.0, -1.0, 20.0])
    uv, _ = projection.project(p, cam.K)
    uv_sub, _ = projection.project(p, sub.K)
    np.testing.assert_allclose(uv_sub * 2, uv, atol=1e-9)


@pytest.mark.parametrize("axis", [(1, -1, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (0, -1, 1), (2, -1, 3)])
def test_quaternion_of_a_180_degree_rotation_round_trips(axis):
    """Regression (issue 14): about (1, -1, 0) the quaternion's signs came out wrong (round-trip error 2.0),
    and it feeds /tf_static."""
    from fsmde_ros.geometry.rig import rotation_from_quaternion

    n = np.asarray(axis, float) / np.linalg.norm(axis)
    R = 2 * np.outer(n, n) - np.eye(3)  # 180 degrees about n
    q = quaternion_from_rotation(R)
    assert abs(q[3]) < 1e-12 and abs(np.linalg.norm(q) - 1) < 1e-12
    np.testing.assert_allclose(rotation_from_quaternion(q), R, atol=1e-12)


def test_quaternion_round_trips_over_random_rotations():
    from fsmde_ros.geometry.rig import rotation_from_quaternion

    rng = np.random.default_rng(0)
    for q in rng.normal(size=(200, 4)):
        q = q / np.linalg.norm(q) * np.sign(q[3])
        np.testing.assert_allclose(quaternion_from_rotation(rotation_from_quaternion(q)), q, atol=1e-9)
