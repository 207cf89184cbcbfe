"""voxelstream first-party plugin: ct."""
