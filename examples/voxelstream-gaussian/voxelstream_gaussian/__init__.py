"""Example third-party voxelstream plugin (see plugin.py)."""
