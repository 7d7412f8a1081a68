"""georax.io: raster read/write (rasterio, COG) and xarray interop."""
