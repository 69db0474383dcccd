"""Errors the user can act on. The CLI prints them as one line; the node reports them in diagnostics."""


class UnifyGeoError(Exception):
    """Base class: a problem with the user's input (paths, files, arguments, images), not a bug."""


class DataFormatError(UnifyGeoError):
    """A data set root, split file, label line or geo.json is missing or malformed."""


class CheckpointError(UnifyGeoError):
    """A model checkpoint is missing, truncated, or does not match its configuration."""


class IndexFormatError(UnifyGeoError):
    """An aerial index is missing, truncated, of another format version, or built with another model."""


class ImageError(UnifyGeoError):
    """An input image cannot be decoded or has an unusable encoding, size or content."""
