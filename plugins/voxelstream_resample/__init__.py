"""voxelstream first-party plugin: resampling to a new voxel spacing (any modality).

::

    iso = voxelstream.get_stage("resample")(volume, spacing=(1.0, 1.0, 1.0), order=1)

Same origin and direction, new spacing, shape ``round(size * spacing_in / spacing_out)``;
lazy and streamed (one output chunk at a time, reading only the input chunks its stencil
touches; regions computed directly for inputs that do so, a dask graph otherwise);
bit-identical for every chunking. See :mod:`voxelstream_resample.stage` and
:mod:`voxelstream_resample.kernels` (orders, borders, accuracy against SimpleITK).
"""
