"""voxelstream first-party plugin: dicom."""
