"""Pictures: colour-mapped depth and its building blocks (depth_pictures), and the figures the demo and the
commands draw from results (figures). OpenCV and numpy only; RGB uint8 images.
"""
