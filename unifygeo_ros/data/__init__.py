"""Data: the synthetic VIGOR-like world (generator, renderers, on-the-fly training stream, ``unifygeo synth``).

``generate_city`` / ``City`` (:mod:`.world`), ``render_aerial`` / ``render_panorama`` and their lightings
(:mod:`.render`), ``CityStream`` (:mod:`.stream`, imported lazily because it needs torch), the VIGOR tiling
and the on-disk writer (:mod:`.synth`).
"""
from unifygeo_ros.data.render import AerialLighting, GroundLighting, render_aerial, render_panorama
from unifygeo_ros.data.world import City, generate_city

__all__ = ["AerialLighting", "City", "CityStream", "GroundLighting", "generate_city", "render_aerial",
           "render_panorama"]


def __getattr__(name):
    if name == "CityStream":
        from unifygeo_ros.data.stream import CityStream

        return CityStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
