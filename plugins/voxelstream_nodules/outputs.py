"""Names of the stored outputs the nodule task reads and writes (imports nothing heavy).

``ISO_OUTPUT`` is the ct plugin's declared name (``voxelstream ct preprocess`` writes it);
``PROB_OUTPUT`` is this task's: the probability map ``voxelstream nodules infer`` writes and
``detect``/``mine`` read. Commands and other plugins name outputs through these, never
through repeated string literals.
"""

from __future__ import annotations

from voxelstream_ct.outputs import ISO_OUTPUT, LUNG_MASK_OUTPUT

__all__ = ["ISO_OUTPUT", "LUNG_MASK_OUTPUT", "PROB_OUTPUT"]

#: ``voxelstream nodules infer``: float32 sigmoid probabilities ``(1, Z', Y', X')`` on the
#: dense grid (spacing = the network's stride x the input spacing).
PROB_OUTPUT = "prob"
