"""voxelstream's diabetic-retinopathy task (entry point ``dr``): colour fundus photographs
read as ``(3, H, W)`` volumes, the crop / scale / local-average preprocessing, a 2-D CNN
graded with an ordinal target, test-time augmentation and quadratic weighted kappa."""
