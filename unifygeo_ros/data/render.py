"""Rendering a :class:`~unifygeo_ros.data.city.City` from above (orthophoto tiles) and from the street
(equirectangular panoramas), under different lighting. The entry points, gathered here:

* :func:`render_aerial`, :func:`render_aerial_height`, :func:`aerial_orthophoto` (:mod:`.aerial`): a north-up
  tile (row 0 = north) cut from a shaded orthophoto of the whole city (computed once per city, car set and
  lighting, then cached on the city), and its height above ground.
* :func:`render_panorama` (:mod:`.panorama`): an equirectangular panorama, columns at the azimuths of
  :mod:`unifygeo_ros.geo`'s convention (the centre column looks along ``heading_deg``), ray-marched over the
  height field with occlusion (:mod:`.panorama_rays`), shaded by :mod:`.panorama_shading` under a sky from
  :mod:`.sky`.
* :class:`AerialLighting`, :class:`GroundLighting`, :func:`cast_shadows` (:mod:`.lighting`): each view's sun,
  colour balance and haze, drawn from the city seed, and the sun's shadows on a height field.
"""
from __future__ import annotations

from unifygeo_ros.data.aerial import aerial_orthophoto, render_aerial, render_aerial_height
from unifygeo_ros.data.lighting import AerialLighting, GroundLighting, cast_shadows
from unifygeo_ros.data.panorama import render_panorama

__all__ = ["AerialLighting", "GroundLighting", "aerial_orthophoto", "cast_shadows", "render_aerial",
           "render_aerial_height", "render_panorama"]
