# Placeholder for maturin only; it is excluded from the nemocore-rs wheel.
#
# maturin puts a dotted module-name ("nemocore._rs") under its parent package
# only when it finds that package's source (python-source/nemocore/__init__.py).
# The real `nemocore/__init__.py` comes from the main nemocore distribution, so
# the wheel built from this crate ships just nemocore/_rs.abi3.so.
