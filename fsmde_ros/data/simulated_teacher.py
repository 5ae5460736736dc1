"""The synthetic world's stand-in for a depth foundation model (Depth Anything V2): relative depth and features.

Depth: the true inverse depth under an unknown per-image affine map (never metric), with errors that depend
on content, as a foundation model's do: blurred, and more so across depth edges (its output bleeds between a
near object and the background); thin structures (poles, trunks) partly merged into the background behind
them; a smooth multiplicative error field whose amplitude grows with range (far structure is what it
resolves least); and pixel noise.
Features: what a foundation model's patch features carry about a pixel, which surface it belongs
to and its local geometry, at a ViT's patch grid (a 518 px wide input cut into 14 px patches, as
`DepthAnythingTeacher` runs), with smooth errors drawn independently per view like its depth:
- channels 0-11: an identity embedding of the surface (a fixed random unit vector per primitive
  of the scene, one for the sky), the same in every view that sees it;
- 12-14: the surface normal in the world frame (0 for the sky), halved;
- 15: log of the range from the camera relative to the image's median range, halved (a scale-free
  depth cue: two neighbouring cameras see a point at nearly the same range).
"""
from __future__ import annotations

import cv2
import numpy as np

TEACHER_SCALE_RANGE = (0.5, 20.0)  # per-image scale of the teacher's inverse depth (log-uniform)
TEACHER_SHIFT_RANGE = (0.0, 0.05)  # per-image shift, in inverse metres before scaling
TEACHER_BLUR_PX = 1.5  # Gaussian sigma at 320 px width: foundation models blur depth edges
TEACHER_LOWFREQ = 0.08  # std of the smooth multiplicative error field (log scale)
TEACHER_NOISE = 0.01  # per-pixel noise std relative to the image's median inverse depth
TEACHER_EDGE_BLUR_PX = 4.0  # Gaussian sigma at 320 px width of the bleeding across depth edges ...
TEACHER_EDGE_LOG_STEP = 0.3  # ... where neighbouring pixels' log depth differ by more than this
TEACHER_THIN_MERGE = 0.6  # share of a thin structure's inverse depth replaced by its background's
TEACHER_FAR_LOWFREQ = 0.15  # extra log-scale error amplitude at TEACHER_FAR_RANGE_M and beyond
TEACHER_FAR_RANGE_M = (20.0, 100.0)  # the extra error grows in log depth from the first to the second

VIT_INPUT_WIDTH_PX = 518  # Depth Anything V2's input width ...
VIT_PATCH_PX = 14  # ... and its ViT's patch size: 37 patch columns
FEATURE_ID_DIM = 12  # channels of the surface identity embedding
FEATURE_DIM = FEATURE_ID_DIM + 4  # + normal (3) + relative log range (1)
FEATURE_NOISE = 0.25  # std of the smooth per-view error field of every feature channel
SKY_ID = (0, -1)  # (kind, index) of the sky in the identity embedding


def simulate_teacher(depth: np.ndarray, rng: np.random.Generator, thin: np.ndarray | None = None) -> np.ndarray:
    """Relative inverse depth [H,W] float32 of a simulated foundation model from z-depth [H,W] [m] (see the
    module doc); thin [H,W] bool marks thin structures (poles, trunks)."""
    h, w = depth.shape
    px = w / 320.0
    hit = np.isfinite(depth) & (depth > 0)
    inv = np.where(hit, 1.0 / np.maximum(depth, 1e-6), 0.0)
    if thin is not None and thin.any():  # thin structures partly merged into what is behind them
        k = max(3, int(round(6 * px)) | 1)
        background = cv2.erode(inv, np.ones((1, k), np.uint8))  # the farthest in a horizontal window
        inv = np.where(thin, (1 - TEACHER_THIN_MERGE) * inv + TEACHER_THIN_MERGE * background, inv)
    log_d = np.log(np.where(hit, np.maximum(depth, 1e-6), 1e4))
    step = np.maximum(np.abs(np.diff(log_d, axis=0, prepend=log_d[:1])), np.abs(np.diff(log_d, axis=1, prepend=log_d[:, :1])))
    sigma = TEACHER_EDGE_BLUR_PX * px
    edge = cv2.GaussianBlur((step > TEACHER_EDGE_LOG_STEP).astype(np.float64), (0, 0), sigma)
    edge = np.clip(edge * np.sqrt(2 * np.pi) * sigma, 0.0, 1.0)  # 1 on an edge line, fading over a few sigma
    sharp = cv2.GaussianBlur(inv, (0, 0), TEACHER_BLUR_PX * px)
    bled = cv2.GaussianBlur(inv, (0, 0), TEACHER_EDGE_BLUR_PX * px)
    inv = (1 - edge) * sharp + edge * bled
    lo, hi = np.log(TEACHER_FAR_RANGE_M)
    far = np.clip((log_d - lo) / (hi - lo), 0.0, 1.0)
    inv = inv * np.exp(TEACHER_LOWFREQ * _smooth_field(rng, (h, w)) + TEACHER_FAR_LOWFREQ * far * _smooth_field(rng, (h, w)))
    scale = np.exp(rng.uniform(*np.log(TEACHER_SCALE_RANGE)))
    shift = rng.uniform(*TEACHER_SHIFT_RANGE)
    ref = np.median(inv[inv > 0]) if np.any(inv > 0) else 1.0
    noisy = inv + shift + rng.normal(scale=TEACHER_NOISE * ref, size=inv.shape)
    return (scale * noisy).astype(np.float32)


def _smooth_field(rng: np.random.Generator, size: tuple[int, int], channels: int | None = None) -> np.ndarray:
    """A smooth random field of unit std [H,W] (or [C,H,W]): a 3 x 5 normal grid, bicubically upsampled."""
    h, w = size
    coarse = rng.normal(size=(3, 5) if channels is None else (channels, 3, 5))
    if channels is None:
        field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        return field / max(field.std(), 1e-6)
    field = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in coarse])
    return field / np.maximum(field.std(axis=(1, 2), keepdims=True), 1e-6)


def feature_grid(height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of the teacher's patch grid for an image of height x width."""
    cols = VIT_INPUT_WIDTH_PX // VIT_PATCH_PX
    return max(1, round(cols * height / width)), cols


def _identity_embedding(kind: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Unit vectors [M,FEATURE_ID_DIM], one fixed random direction per (kind, index)."""
    pairs, inverse = np.unique(np.stack([kind, index], axis=1), axis=0, return_inverse=True)
    table = np.stack([np.random.default_rng([int(k) + 1, int(i) + 1, 0xFEA7]).normal(size=FEATURE_ID_DIM)
                      for k, i in pairs])
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    return table[inverse.ravel()]


def simulate_teacher_features(kind: np.ndarray, index: np.ndarray, normal_world: np.ndarray, range_m: np.ndarray,
                              rng: np.random.Generator) -> np.ndarray:
    """Patch features [FEATURE_DIM, gh, gw] float32 of one view (see module doc).

    kind, index [H,W] int: the surface hit per pixel (range_m inf = sky), normal_world [H,W,3],
    range_m [H,W] distance from the camera [m]. rng draws this view's own errors.
    """
    h, w = kind.shape
    sky = ~np.isfinite(range_m)
    k = np.where(sky, SKY_ID[0], kind).ravel()
    i = np.where(sky, SKY_ID[1], index).ravel()
    feats = np.zeros((h * w, FEATURE_DIM))
    feats[:, :FEATURE_ID_DIM] = _identity_embedding(k, i)
    feats[:, FEATURE_ID_DIM:FEATURE_ID_DIM + 3] = 0.5 * np.where(sky[..., None], 0.0, normal_world).reshape(-1, 3)
    if (~sky).any():
        rel = np.log(np.where(sky, 1.0, range_m) / np.median(range_m[~sky]))
        feats[:, -1] = 0.5 * np.where(sky, 0.0, rel).ravel()
    feats = feats.reshape(h, w, FEATURE_DIM).astype(np.float32)
    gh, gw = feature_grid(h, w)
    pooled = np.stack([cv2.resize(feats[..., ch], (gw, gh), interpolation=cv2.INTER_AREA) for ch in range(FEATURE_DIM)])
    pooled = pooled + FEATURE_NOISE * _smooth_field(rng, (gh, gw), FEATURE_DIM)
    return pooled.astype(np.float32)
