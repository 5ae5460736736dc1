"""Tests of the synthetic surround world: geometry, lidar, teacher, determinism, speed, files."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from fsmde_ros.data.raycast import AzimuthCuller, CameraCuller, cast
from fsmde_ros.data.scene import box_scene
from fsmde_ros.data.simulated_teacher import FEATURE_DIM, feature_grid
from fsmde_ros.data.synthetic import (
    LIDAR_MAX_RANGE_M,
    LIDAR_XYZ_M,
    WORLD_RADIUS_M,
    SyntheticSurround,
    lidar_directions,
    project_lidar,
    render_view,
    write_synthetic_sequence,
)
from fsmde_ros.viz import depth_pictures as viz
from fsmde_ros.geometry.projection import camera_rays
from fsmde_ros.geometry.rig import load_rig, mount_transform

H, W = 192, 320  # the default render size
N_CAMERAS = 6
SMALL_H, SMALL_W = 96, 160  # for tests that only need consistency, not resolution


@pytest.fixture(scope="module")
def ddad_ds() -> SyntheticSurround:
    return SyntheticSurround("ddad", seed=0, height=H, width=W, frames=5, speed_mps=8.0, fps=10.0)


@pytest.fixture(scope="module")
def frames(ddad_ds):
    """Items 0 and 1 of the DDAD-rig dataset, and the wall time of item 1."""
    first = ddad_ds[0]
    t0 = time.perf_counter()
    second = ddad_ds[1]
    return first, second, time.perf_counter() - t0


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _reproject(depth, K_src, T_dst_src, K_dst, shape, u_min=0):
    """Pixels with finite depth (u >= u_min) of a source view mapped into a destination view: (z_src, z_dst, u, v)."""
    v, u = np.nonzero(np.isfinite(depth))
    keep = u >= u_min
    v, u = v[keep], u[keep]
    z = depth[v, u].astype(np.float64)
    pts = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K_src).T * z[:, None]
    pts = pts @ T_dst_src[:3, :3].T + T_dst_src[:3, 3]
    front = pts[:, 2] > 0.1
    z, pts = z[front], pts[front]
    uvw = pts @ K_dst.T
    uu, vv = np.rint(uvw[:, 0] / uvw[:, 2]).astype(int), np.rint(uvw[:, 1] / uvw[:, 2]).astype(int)
    inside = (uu >= 0) & (uu < shape[1]) & (vv >= 0) & (vv < shape[0])
    return z[inside], pts[inside, 2], uu[inside], vv[inside]


@pytest.mark.parametrize("yaw_deg, xyz", [(0.0, (0.0, 0.0, 1.5)), (-20.0, (1.0, 4.0, 1.7)), (-40.0, (3.0, 6.5, 2.5))])
def test_box_depth_matches_analytic_geometry(yaw_deg, xyz):
    lo, hi = np.array([10.0, -2.0, 0.5]), np.array([12.5, 2.0, 3.5])
    scene = box_scene(lo, hi)
    K = np.array([[180.0, 0, 79.5], [0, 180.0, 59.5], [0, 0, 1]])
    T = mount_transform(xyz, (0.0, 0.0, yaw_deg))
    _, depth = render_view(scene, K, T, 120, 160, shadows=False)
    # Independent reference: every face plane, points inside the face rectangle, nearest in front.
    u, v = np.meshgrid(np.arange(160.0), np.arange(120.0))
    d = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T @ T[:3, :3].T  # z = 1 in the camera
    o = T[:3, 3]
    expected = np.full((120, 160), np.inf)
    for axis in range(3):
        for plane in (lo[axis], hi[axis]):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (plane - o[axis]) / d[..., axis]
            p = o + t[..., None] * d
            others = [a for a in range(3) if a != axis]
            on_face = np.all([(p[..., a] >= lo[a]) & (p[..., a] <= hi[a]) for a in others], axis=0) & (t > 0)
            expected = np.where(on_face, np.minimum(expected, t), expected)
    hit = np.isfinite(expected)
    assert hit.sum() > 200
    assert np.array_equal(np.isfinite(depth), hit)
    np.testing.assert_allclose(depth[hit], expected[hit], rtol=1e-5)
    if yaw_deg == 0.0:  # fronto-parallel face: z-depth is the face distance everywhere
        np.testing.assert_allclose(depth[hit], lo[0] - xyz[0], rtol=1e-6)


def test_culling_does_not_change_hits(ddad_ds):
    class Everything:  # a culler that lets every object test every ray
        def __init__(self, rows, cols):
            self.rows, self.cols = rows, cols

        def rects(self, lo, hi):
            return [[(0, self.rows, 0, self.cols)] for _ in lo]

    T = ddad_ds.ego_pose(2)
    rig = ddad_ds.rig.resized(SMALL_W, SMALL_H)
    for c in (0, 1, 4):
        T_wc = T @ rig.T_base_cam[c]
        dirs = camera_rays(rig.K[c], SMALL_H, SMALL_W) @ T_wc[:3, :3].T
        a = cast(ddad_ds.scene, T_wc[:3, 3], dirs, CameraCuller(rig.K[c], T_wc, SMALL_H, SMALL_W), WORLD_RADIUS_M)
        b = cast(ddad_ds.scene, T_wc[:3, 3], dirs, Everything(SMALL_H, SMALL_W), WORLD_RADIUS_M)
        assert np.array_equal(a.t, b.t) and np.array_equal(a.index, b.index)
    origin, dirs = T[:3, 3] + LIDAR_XYZ_M, lidar_directions()
    a = cast(ddad_ds.scene, origin, dirs, AzimuthCuller(origin, *dirs.shape[:2]), LIDAR_MAX_RANGE_M)
    b = cast(ddad_ds.scene, origin, dirs, Everything(*dirs.shape[:2]), LIDAR_MAX_RANGE_M)
    assert np.array_equal(a.t, b.t)


def test_item_shapes_dtypes_and_render_time(ddad_ds, frames):
    item, _, seconds = frames
    assert len(ddad_ds) == 5
    assert item["images"].shape == (N_CAMERAS, H, W, 3) and item["images"].dtype == np.uint8
    for key in ("depth", "lidar_depth", "teacher"):
        assert item[key].shape == (N_CAMERAS, H, W) and item[key].dtype == np.float32, key
    assert item["teacher_features"].shape[:2] == (N_CAMERAS, FEATURE_DIM)
    assert item["K"].shape == (N_CAMERAS, 3, 3) and item["T_base_cam"].shape == (N_CAMERAS, 4, 4)
    assert item["T_world_base"].shape == (4, 4)
    np.testing.assert_allclose(item["K"], load_rig("ddad").resized(W, H).K)
    assert item["camera_names"] == load_rig("ddad").names
    depth = item["depth"]
    assert np.all(depth > 0) and np.isinf(depth).any() and np.isfinite(depth).mean() > 0.8  # sky is +inf
    assert np.nanmax(np.where(np.isfinite(depth), depth, np.nan)) <= WORLD_RADIUS_M
    assert item["images"].std() > 20  # textured, not flat
    assert seconds < 2.0, f"one 6x{H}x{W} item took {seconds:.2f} s"
    with pytest.raises(IndexError):
        ddad_ds[len(ddad_ds)]


def test_lidar_is_sparse_and_agrees_with_dense_depth(frames):
    item = frames[0]
    lidar, depth = item["lidar_depth"], item["depth"]
    valid = lidar > 0
    assert 0.005 < valid.mean() < 0.2  # a 32-beam pattern: a few % of the pixels
    assert np.all(valid.mean(axis=(1, 2)) > 0.002)  # every camera gets returns
    assert lidar.max() <= LIDAR_MAX_RANGE_M
    assert np.all(np.isfinite(depth[valid]))  # no returns where the camera sees sky
    rel = np.abs(lidar[valid] - depth[valid]) / depth[valid]
    assert np.median(rel) < 0.01
    assert np.all(rel <= 0.03 + 1e-6)


def test_lidar_zbuffer_drops_points_hidden_from_the_camera():
    K = np.array([[[100.0, 0, 49.5], [0, 100.0, 29.5], [0, 0, 1]]])
    T = mount_transform((0, 0, 0), (0, 0, 0))[None]  # camera at base_link origin looking along +x
    depth = np.full((1, 60, 100), 5.0, np.float32)  # a wall 5 m ahead
    depth[0, :5] = np.inf  # sky in the top rows
    pts = np.array([[5.0, 0.0, 0.0], [10.0, 0.5, 0.0], [4.99, 0.0, 0.2], [50.0, 0.0, 14.0]])  # on, behind, on, sky
    out = project_lidar(pts, K, T, depth)
    assert (out > 0).sum() == 2
    assert out[0, 30, 40] == 0  # the point behind the wall (u = 49.5 - 100*0.05)
    assert out[0, 30, 50] == pytest.approx(5.0, abs=1e-6)


def test_teacher_ranks_like_depth_but_is_not_metric(frames):
    first, second, _ = frames
    scales = []
    for item in (first, second):
        for c in range(N_CAMERAS):
            d, t = item["depth"][c], item["teacher"][c]
            m = np.isfinite(d)
            A = np.column_stack([1.0 / d[m], np.ones(m.sum())])
            (a, _), *_ = np.linalg.lstsq(A, t[m], rcond=None)
            scales.append(a)
            assert _spearman(1.0 / d[m], t[m]) > 0.9
    scales = np.array(scales)
    assert np.all(scales > 0)
    assert scales.max() / scales.min() > 1.1  # per-image scale differs
    assert not np.allclose(scales[:N_CAMERAS], scales[N_CAMERAS:], rtol=0.1)  # and per frame


def test_deterministic_by_seed():
    a = SyntheticSurround("nuscenes", seed=3, height=SMALL_H, width=SMALL_W, frames=3)[1]
    b = SyntheticSurround("nuscenes", seed=3, height=SMALL_H, width=SMALL_W, frames=3)[1]
    c = SyntheticSurround("nuscenes", seed=4, height=SMALL_H, width=SMALL_W, frames=3)[1]
    for key in ("images", "depth", "lidar_depth", "teacher", "T_world_base"):
        assert np.array_equal(a[key], b[key]), key
    assert a["stamp"] == b["stamp"]
    assert not np.array_equal(a["images"], c["images"])
    assert not np.array_equal(a["depth"], c["depth"])


def test_consecutive_frames_move_the_ego_forward_through_one_world(ddad_ds, frames):
    first, second, _ = frames
    step = second["T_world_base"][:3, 3] - first["T_world_base"][:3, 3]
    np.testing.assert_allclose(step, [0.8, 0.0, 0.0], atol=1e-9)  # 8 m/s at 10 fps along the road (+x)
    assert second["stamp"] - first["stamp"] == pytest.approx(0.1)
    # The front camera's frame-0 surfaces are found again in frame 1 where expected, 0.8 m nearer.
    T_src = first["T_world_base"] @ first["T_base_cam"][0]
    T_dst = second["T_world_base"] @ second["T_base_cam"][0]
    z0, z1, u, v = _reproject(first["depth"][0], first["K"][0], np.linalg.inv(T_dst) @ T_src, second["K"][0], (H, W))
    rel = np.abs(second["depth"][0][v, u] - z1) / z1
    assert len(z1) > 0.5 * H * W and np.mean(rel < 0.02) > 0.9
    pitch = np.radians(1.0)  # CAMERA_01 looks 1 degree down
    np.testing.assert_allclose(np.median(z0 - second["depth"][0][v, u]), 0.8 * np.cos(pitch), atol=0.02)


def test_adjacent_cameras_see_the_same_surfaces(ddad_ds, frames):
    item = frames[0]
    agree_total, n_total = 0, 0
    for i, j in ddad_ds.rig.neighbours:
        T_ji = np.linalg.inv(item["T_base_cam"][j]) @ item["T_base_cam"][i]
        # ring order is clockwise: camera i's right edge overlaps camera j's left edge
        _, z, u, v = _reproject(item["depth"][i], item["K"][i], T_ji, item["K"][j], (H, W), u_min=int(0.85 * W))
        agree = np.abs(item["depth"][j][v, u] - z) / z < 0.02
        assert agree.sum() > 200, (i, j)
        agree_total, n_total = agree_total + agree.sum(), n_total + len(z)
    assert agree_total / n_total > 0.8  # the rest: surfaces occluded from the other camera's position


def test_teacher_features_describe_a_surface_alike_in_adjacent_views(ddad_ds, frames):
    """What view-relational KD transfers: the same surface seen by two cameras has similar teacher
    features (despite each view's own errors), other surfaces do not."""
    item = frames[0]
    f = item["teacher_features"]
    gh, gw = feature_grid(H, W)
    assert f.shape == (N_CAMERAS, FEATURE_DIM, gh, gw) and f.dtype == np.float32 and gw == 37  # 518 px / 14 px patches
    rng = np.random.default_rng(0)
    same, other = [], []
    for i, j in ddad_ds.rig.neighbours:
        T_ji = np.linalg.inv(item["T_base_cam"][j]) @ item["T_base_cam"][i]
        v, u = np.nonzero(np.isfinite(item["depth"][i]))
        keep = u >= int(0.85 * W)
        v, u = v[keep], u[keep]
        z = item["depth"][i][v, u].astype(np.float64)
        pts = (np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(item["K"][i]).T * z[:, None]) @ T_ji[:3, :3].T + T_ji[:3, 3]
        uvw = pts @ item["K"][j].T
        uu, vv = np.rint(uvw[:, 0] / uvw[:, 2]).astype(int), np.rint(uvw[:, 1] / uvw[:, 2]).astype(int)
        ok = (pts[:, 2] > 0.1) & (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
        a = f[i][:, v[ok] * gh // H, u[ok] * gw // W].T
        b = f[j][:, vv[ok] * gh // H, uu[ok] * gw // W].T
        r = f[j][:, rng.integers(0, gh, ok.sum()), rng.integers(0, gw, ok.sum())].T
        cos = lambda x, y: (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))  # noqa: E731
        same.append(cos(a, b))
        other.append(cos(a, r))
    same, other = np.concatenate(same), np.concatenate(other)
    assert np.mean(same) > np.mean(other) + 0.2, (np.mean(same), np.mean(other))
    again = SyntheticSurround("ddad", seed=0, height=H, width=W, frames=5)[0]["teacher_features"]
    assert np.array_equal(again, f)  # deterministic by seed, like the teacher's depth
    assert not np.allclose(f[0], f[1], atol=0.05)  # and each view has its own errors


def test_write_synthetic_sequence(tmp_path):
    out = write_synthetic_sequence("nuscenes", 2, tmp_path / "seq", height=SMALL_H, width=SMALL_W, seed=1)
    assert out == tmp_path / "seq"
    rig = load_rig("nuscenes")
    for i in range(2):
        for name in rig.names:
            img = cv2.imread(str(out / f"frame_{i:04d}" / f"{name}.png"))
            assert img is not None and img.shape == (SMALL_H, SMALL_W, 3)
        with np.load(out / f"frame_{i:04d}.npz") as z:
            assert z["depth"].shape == z["lidar_depth"].shape == z["teacher"].shape == (N_CAMERAS, SMALL_H, SMALL_W)
            assert z["K"].shape == (N_CAMERAS, 3, 3) and z["T_world_base"].shape == (4, 4)
            assert float(z["stamp"]) > 0
    written = load_rig(out / "rig.yaml")  # the preset schema, readable as a rig
    np.testing.assert_allclose(written.K, rig.resized(SMALL_W, SMALL_H).K, atol=1e-9)
    np.testing.assert_allclose(written.T_base_cam, rig.T_base_cam, atol=1e-9)
    preview = cv2.imread(str(out / "preview.png"))
    assert preview is not None and preview.shape[0] > 4 * SMALL_H and preview.shape[1] > 3 * SMALL_W
    assert preview.std() > 30 and len(np.unique(preview.reshape(-1, 3), axis=0)) > 1000


def test_viz_colours_and_surround_layout():
    rgb = viz.colorize_depth(np.array([[1.0, 100.0, np.inf, 0.0, np.nan]]), 1.0, 100.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 5, 3)
    assert rgb[0, 0, 0] > rgb[0, 0, 2] and rgb[0, 1, 2] > rgb[0, 1, 0]  # near red, far blue
    assert np.all(rgb[0, 2:] == 0)  # sky, no measurement, NaN: black
    for name, expected in [("ddad", (["CAMERA_05", "CAMERA_01", "CAMERA_06"], ["CAMERA_07", "CAMERA_09", "CAMERA_08"])),
                           ("nuscenes", (["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"],
                                         ["CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"]))]:
        rig = load_rig(name)
        front, back = viz.surround_layout([c.yaw_deg for c in rig.cameras])
        assert ([rig.names[i] for i in front], [rig.names[i] for i in back]) == expected


def test_the_regimes_of_real_data_teacher_only_sparse_lidar_and_a_shifted_domain():
    """Issue 21 item 4: gt=none (no GT of any kind), beams=8 (a quarter of the lidar), domain=shifted."""
    from fsmde_ros.data.surround import open_dataset

    full = open_dataset("synthetic:ddad?seed=3&frames=1", 48, 80)[0]
    none = open_dataset("synthetic:ddad?seed=3&frames=1&gt=none", 48, 80)[0]
    sparse8 = open_dataset("synthetic:ddad?seed=3&frames=1&beams=8", 48, 80)[0]
    shifted = open_dataset("synthetic:ddad?seed=3&frames=1&domain=shifted", 48, 80)[0]
    assert "depth" not in none and not none["lidar_depth"].any()
    np.testing.assert_array_equal(none["images"], full["images"])
    np.testing.assert_array_equal(none["teacher"], full["teacher"])  # the teacher still sees the world
    n_full, n8 = int((full["lidar_depth"] > 0).sum()), int((sparse8["lidar_depth"] > 0).sum())
    assert 0.15 * n_full < n8 < 0.4 * n_full
    hit = sparse8["lidar_depth"] > 0
    np.testing.assert_allclose(sparse8["lidar_depth"][hit], full["depth"][hit], rtol=0.05)  # samples of the world
    assert np.abs(shifted["images"].astype(float) - full["images"]).mean() > 10  # another look ...
    assert np.isfinite(shifted["depth"]).any() and (shifted["lidar_depth"] > 0).any()  # ... still a street with GT
    for bad in ("gt=dense", "beams=7", "domain=mars"):
        with pytest.raises(ValueError, match=bad.split("=")[0]):
            open_dataset(f"synthetic:ddad?frames=1&{bad}", 48, 80)
