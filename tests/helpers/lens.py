"""What a camera with lens distortion records: a pinhole view warped through (K, D), written with OpenCV's
undistortPoints (the reference the node's own remap is checked against)."""
import cv2
import numpy as np

PLUMB_BOB_D = np.array([-0.28, 0.08, 0.001, -0.001, 0.0])  # k1 k2 p1 p2 k3: a strong barrel lens
EQUIDISTANT_D = np.array([0.08, 0.02, 0.0, 0.0])  # k1..k4 of a fisheye (equidistant) lens


def distort(img: np.ndarray, K: np.ndarray, D: np.ndarray, model: str) -> np.ndarray:
    """The raw image [H,W,3] a lens (K, D, model) records of the scene whose pinhole view through K is `img`."""
    v, u = np.mgrid[0:img.shape[0], 0:img.shape[1]].astype(np.float64)
    raw = np.stack([u.ravel(), v.ravel()], 1)[:, None, :]
    if model == "equidistant":
        ideal = cv2.fisheye.undistortPoints(raw, K, D, P=K)
    else:
        ideal = cv2.undistortPoints(raw, K, D, P=K)
    m = ideal.reshape(img.shape[0], img.shape[1], 2).astype(np.float32)
    return cv2.remap(img, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def outer_half_relative_difference(depth: np.ndarray, reference: np.ndarray, K: np.ndarray, valid: np.ndarray) -> float:
    """Mean |depth - reference| / reference [V,h,w] over the outer half of each image (the pixels whose distance
    from the principal point, in focal lengths, is above the median) where both are finite and `valid`."""
    h, w = depth.shape[1:]
    yy, xx = np.mgrid[0:h, 0:w]
    per_view = []
    for c in range(len(depth)):
        r = np.hypot((xx - K[c, 0, 2]) / K[c, 0, 0], (yy - K[c, 1, 2]) / K[c, 1, 1])
        ok = (r > np.median(r)) & np.isfinite(depth[c]) & np.isfinite(reference[c]) & valid[c]
        per_view.append(np.mean(np.abs(depth[c][ok] - reference[c][ok]) / reference[c][ok]))
    return float(np.mean(per_view))
