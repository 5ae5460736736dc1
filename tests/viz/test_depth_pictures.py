"""What a user sees in every picture: near is warm, far is cold, what has no depth is black, cameras in ring order."""
import numpy as np
import pytest

from fsmde_ros.viz.depth_pictures import INVALID_RGB, colorbar, colorize_depth, surround_layout


def test_near_is_red_far_is_blue_and_nan_inf_zero_are_black():
    depth = np.array([[1.0, 100.0, np.nan, np.inf, 0.0, -np.inf]])
    rgb = colorize_depth(depth, min_m=1.0, max_m=100.0)
    near, far = rgb[0, 0].astype(int), rgb[0, 1].astype(int)
    assert near[0] > near[2] and far[2] > far[0], (near, far)
    assert (rgb[0, 2:] == INVALID_RGB).all()


def test_colours_follow_log_depth_and_the_colour_bar_matches_them():
    """The colour of 10 m on a 1-100 m scale is the one at the middle of a log scale: the colour bar's (near left)."""
    ramp = colorize_depth(np.geomspace(1.0, 100.0, 201)[None], 1.0, 100.0)[0]
    assert (colorize_depth(np.array([[10.0]]), 1.0, 100.0)[0, 0] == ramp[100]).all()
    bar = colorbar(400, 1.0, 100.0)
    assert bar.shape == (40, 400, 3) and bar.dtype == np.uint8
    row = bar[6]
    assert any((row[i] == ramp[0]).all() for i in range(len(row)))  # the near end's colour is on the bar
    with pytest.raises(ValueError, match="min_m"):
        colorize_depth(ramp, 10.0, 5.0)


def test_surround_layout_puts_front_cameras_above_back_ones_left_to_right():
    yaws = [0.0, -60.0, -120.0, 180.0, 120.0, 60.0]  # front, front-right, back-right, back, back-left, front-left
    front, back = surround_layout(yaws)
    assert front == [5, 0, 1]  # front-left, front, front-right
    assert back == [4, 3, 2]   # back-left, back, back-right
