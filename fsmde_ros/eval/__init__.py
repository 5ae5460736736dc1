"""How good a depth is: metrics against GT, cross-view consistency, the sparsification protocol.

numpy only, on top of geometry (reprojection); used by evaluation, the demo, the service's consistency figure
and the benchmarks.
"""
