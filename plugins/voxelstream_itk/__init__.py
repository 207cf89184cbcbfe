"""voxelstream first-party plugin: itk — MetaImage, NIfTI and NRRD volumes through SimpleITK.

Files: ``.mhd``/``.mha`` (MetaImage), ``.nii``/``.nii.gz`` (NIfTI), ``.nrrd``/``.nhdr``
(NRRD), matched by suffix in any case; their data files (``.raw``, ``.zraw``, ``.raw.gz``,
``.img``) are companions. The volume id is the file name without its image extension
(LUNA16's ``<seriesuid>.mhd`` keeps every dot of the UID).

Discovery reads headers only (SimpleITK ``ReadImageInformation``) and checks that the voxel
data exist in full (a missing or short ``.raw``/``.zraw``, a truncated ``.nii``/``.nii.gz``,
which SimpleITK itself would read as garbage). Voxels are read lazily, one dask task per z
slab of about 64 slices:

* uncompressed MetaImage (``.mhd`` + one ``.raw``, or ``.mha``): a memory map opened inside
  each task (``HeaderSize``, ``HeaderSize = -1`` and big-endian data handled);
* everything else: SimpleITK's streaming reader (``SetExtractIndex/SetExtractSize``). For
  gzip-compressed files each slab decompresses the stream from its start (about k/2 full
  decompressions for k slabs): memory stays bounded, time grows. NRRD data are checked when
  read: a truncated NRRD fails in its slab with an error naming the file.

Geometry comes from SimpleITK (NIfTI already converted to LPS), so ``index_to_world`` equals
``TransformIndexToPhysicalPoint``. dtype is kept as SimpleITK reads it (int16 stays int16;
NIfTI with ``scl_slope`` comes back as float, as in SimpleITK). Multi-component pixels become
a leading channel axis ``(c, z, y, x)``; 2-D and 4-D images are refused with a clear error.
``meta``: id, source, reader ``itk``, format, and modality (with units ``HU`` for CT) when the
header names one (MetaImage ``Modality = MET_MOD_CT``).
"""
