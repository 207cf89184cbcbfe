"""Example third-party voxelstream plugin (registered in :mod:`voxelstream_example.plugin`).

* :mod:`.npy_reader`  -- reader ``npy``: ``NAME.npy`` pixels + ``NAME.json`` geometry, 2-D or 3-D
* :mod:`.smoothing`   -- stage ``gaussian``: Gaussian smoothing, halo per spatial axis from sigma
* :mod:`.mixer`       -- model ``example-mixer``: a per-pixel channel mix (Flax NNX)
* :mod:`.commands`    -- task ``example`` (modality ``SM``): ``voxelstream example smooth|mix``

The guide that walks through these files: ``docs/plugins.md`` in the voxelstream repository.
"""
