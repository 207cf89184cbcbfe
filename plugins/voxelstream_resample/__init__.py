"""voxelstream first-party plugin: resampling to a new voxel spacing (any modality)."""
