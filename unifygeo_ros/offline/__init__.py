"""Offline jobs (no ROS): training, VIGOR-protocol evaluation and its metrics and plots, the embedded demo."""
