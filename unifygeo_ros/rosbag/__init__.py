"""Recordings (no ROS install needed; ``rosbags``): rosbag2 I/O, synthetic drives, replay and its scoring."""
