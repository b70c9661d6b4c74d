"""Metric depth from the camera's height above the road: each frame's scale from the road, or a typed refusal
(camera_height.py: what evaluate_depth.py and predict.py both use), and predict.py's inputs in metres
(prediction.py). docs/metric_depth.md gives the method and its measurements."""
