"""voxelstream first-party plugin: lung-nodule detection on CT (task ``nodules``).

Modules: :mod:`.annotations` (LUNA16 tables), :mod:`.cubeset` (the Zarr cube set),
:mod:`.extract` (chunk-grouped cube reads), :mod:`.sampling` (negatives, augmentation),
:mod:`.cubes` (the ``cubes`` command's work), :mod:`.model` (the 3-D CNN),
:mod:`.train` (the ``train`` command's work), :mod:`.commands` and :mod:`.plugin`.
"""
