"""The ROS 2 shell: the only subpackage that imports ROS (``rclpy`` and message packages).

:mod:`~unifygeo_ros.ros.node` (``localizer_node``) and :mod:`~unifygeo_ros.ros.live_client` (``unifygeo replay
--live``) import ROS; their helpers (:mod:`~unifygeo_ros.ros.params`, :mod:`~unifygeo_ros.ros.worker`,
:mod:`~unifygeo_ros.ros.messages`) are plain Python so they can be tested without ROS. Importing this package
imports nothing from ROS.
"""
