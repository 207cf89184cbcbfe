"""voxelstream first-party plugin: itk."""
