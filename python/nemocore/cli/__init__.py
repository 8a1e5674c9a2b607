"""The ``nemocore`` command line: ``doctor``, ``bench``, ``demo``."""
