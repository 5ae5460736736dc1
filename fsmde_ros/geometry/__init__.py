"""The lowest layer: rigs, pinhole projection, resizing, cloud fusion.

numpy (and OpenCV for pictures) only: no torch, no ROS. Everything above builds on it.
"""
