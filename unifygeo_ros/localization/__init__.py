"""The hierarchy at run time, ROS-free: index search -> metric localization -> re-rank -> fix -> gate -> prior.

* :mod:`~unifygeo_ros.localization.localizer` - :class:`Localizer`: one panorama against one aerial index.
* :mod:`~unifygeo_ros.localization.pipeline` - frames -> outcomes: validation, the integrity of a fix (gating),
  the tracking prior and its counters; the node and ``unifygeo replay`` drive the same object.
"""
