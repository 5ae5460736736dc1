"""The lowest layer: rigs, pinhole projection, cloud fusion, depth metrics, depth colours.

numpy (and OpenCV for pictures) only: no torch, no ROS. Everything above builds on it.
"""
