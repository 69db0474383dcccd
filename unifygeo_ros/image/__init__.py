"""The first stage of the data path: image bytes or ROS image buffers -> a checked RGB panorama -> a tensor.

* :mod:`~unifygeo_ros.image.codec` - the one decoder of ROS image buffers (``sensor_msgs/Image`` fields,
  ``CompressedImage``) used by the node and by rosbag replay alike.
* :mod:`~unifygeo_ros.image.preprocess` - files and encoded bytes, validation, resizing, normalisation, rolling.
* :mod:`~unifygeo_ros.image.headers` - an encoded image's format (JPEG or PNG) and size, read without decoding.
* :mod:`~unifygeo_ros.image.stitch` - pinhole cameras of a rig -> an equirectangular panorama.
"""
