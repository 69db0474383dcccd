"""Data: the synthetic VIGOR-like world (generator, renderers, on-the-fly training stream, ``unifygeo synth``)
and the VIGOR reader.

Where things are:

* the world: :mod:`.world` (``generate_city``, the order of the steps), :mod:`.city` (``City``, the layers),
  :mod:`.city_schema` (what the layer values mean), :mod:`.city_builder` (the generator's state and random
  streams), :mod:`.materials` (colours, texture), :mod:`.streets` / :mod:`.street_paint` /
  :mod:`.street_furniture` (road network, markings, street trees and cars), :mod:`.blocks` /
  :mod:`.buildings` / :mod:`.open_spaces` (what fills the land between the streets), :mod:`.vegetation`
  (tree canopies), :mod:`.raster_draw` (fixed-point cv2 drawing on the grid);
* the views: :mod:`.render` (the entry points), :mod:`.lighting`, :mod:`.aerial`, :mod:`.panorama`,
  :mod:`.panorama_rays`, :mod:`.panorama_shading`, :mod:`.sky`;
* the VIGOR tiling and files: :mod:`.tiling`, :mod:`.synth` (``unifygeo synth``), :mod:`.synth_files`,
  :mod:`.synth_pictures`, :mod:`.height` (surface-height files);
* training data: :mod:`.stream` (``CityStream``, imported lazily here because it needs torch), and the VIGOR
  reader :mod:`.vigor` (with :mod:`.vigor_labels`, :mod:`.vigor_layout`).
"""
from unifygeo_ros.data.render import AerialLighting, GroundLighting, render_aerial, render_panorama
from unifygeo_ros.data.world import City, generate_city

__all__ = ["AerialLighting", "City", "CityStream", "GroundLighting", "generate_city", "render_aerial",
           "render_panorama"]


def __getattr__(name):
    if name == "CityStream":
        from unifygeo_ros.data.stream import CityStream  # lazily: the stream needs torch, the rest of data not

        return CityStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
