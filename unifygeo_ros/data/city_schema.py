"""What the values in a :class:`~unifygeo_ros.data.city.City`'s layers mean: surface classes, window styles,
car sets (which view sees which cars), city styles, and the record types of trees and cars.

Pure constants, no code: every other world module reads them from here.
"""
from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------------- surfaces
SURFACE_GROUND = 0  # bare ground / outside the city
SURFACE_ROAD = 1
SURFACE_SIDEWALK = 2
SURFACE_MARKING = 3
SURFACE_GRASS = 4
SURFACE_PATH = 5
SURFACE_PARKING = 6
SURFACE_BUILDING = 7
SURFACE_ROOF_DETAIL = 8
SURFACE_TREE = 9
SURFACE_WATER = 10
SURFACE_PLAZA = 11
SURFACE_GARDEN = 12
SURFACE_CAR = 13
SURFACE_DRIVEWAY = 14
SURFACE_HEDGE = 15
SURFACE_NAMES = ("ground", "road", "sidewalk", "marking", "grass", "path", "parking", "building",
                 "roof_detail", "tree", "water", "plaza", "garden", "car", "driveway", "hedge")

# ---------------------------------------------------------------------------------------------- buildings
WINDOW_NONE, WINDOW_PUNCHED, WINDOW_RIBBON, WINDOW_HOUSE = 0, 1, 2, 3

# ---------------------------------------------------------------------------------------------- cars
CARS_BOTH, CARS_AERIAL_ONLY, CARS_GROUND_ONLY = 0, 1, 2
#: which car sets each view shows
CAR_VIEWS = {
    "none": (),
    "both": (CARS_BOTH,),
    "aerial": (CARS_BOTH, CARS_AERIAL_ONLY),
    "ground": (CARS_BOTH, CARS_GROUND_ONLY),
    "all": (CARS_BOTH, CARS_AERIAL_ONLY, CARS_GROUND_ONLY),
}
CAR_BODY_FRACTION = 0.62  # height of a car's lower body relative to its roof

# ---------------------------------------------------------------------------------------------- cities
STYLES = ("centre", "suburb", "mixed")

# ---------------------------------------------------------------------------------------------- records
CAR_DTYPE = np.dtype([("east", "f8"), ("north", "f8"), ("length", "f4"), ("width", "f4"), ("height", "f4"),
                      ("angle", "f4"), ("rgb", "u1", (3,)), ("set", "u1")])
TREE_DTYPE = np.dtype([("east", "f8"), ("north", "f8"), ("radius", "f4"), ("top", "f4"), ("base", "f4"),
                       ("rgb", "u1", (3,))])
