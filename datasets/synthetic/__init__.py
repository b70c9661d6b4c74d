"""Generated data for tests, benchmarks and the demo: ray-cast driving scenes in KITTI's layout, and small
KITTI-size frames."""
