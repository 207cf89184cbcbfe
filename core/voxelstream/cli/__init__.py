"""The ``voxelstream`` command line: engine commands plus those that task plugins add."""
