"""One frame -> anomaly map and regions: resize or tiles, stitching, postprocess. Shared by the
line service, eval, calibrate and train."""
