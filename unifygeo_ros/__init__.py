"""unifygeo_ros: cross-view geo-localization (UnifyGeo) with a ROS 2 front end.

Everything in this package except :mod:`unifygeo_ros.ros.node` is free of ROS imports, so training and
evaluation machines need no ROS install.
"""
__version__ = "0.1.0"
