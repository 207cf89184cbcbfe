"""voxelstream first-party plugin: dicom.

The ``dicom`` reader: DICOM series grouped by SeriesInstanceUID, headers scanned at
discovery (:mod:`.headers`), each series checked and placed in the world (:mod:`.series`),
pixels decoded slab by slab only when the dask graph runs (:mod:`.pixels`).
"""
