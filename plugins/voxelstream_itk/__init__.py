"""voxelstream first-party plugin: itk — MetaImage, NIfTI and NRRD volumes through SimpleITK.

Files: ``.mhd``/``.mha`` (MetaImage), ``.nii``/``.nii.gz`` (NIfTI), ``.nrrd``/``.nhdr``
(NRRD), matched by suffix in any case; their data files (``.raw``, ``.zraw``, ``.raw.gz``,
``.img``) are companions. The volume id is the file name without its image extension
(LUNA16's ``<seriesuid>.mhd`` keeps every dot of the UID).

Discovery reads headers only: each header's values are checked first (:mod:`.gate`; SimpleITK
crashes the process on some hostile values), then read by SimpleITK (``ReadImageInformation``);
the declared size is checked against the output limit (``voxelstream.limits``), data files must
stay in the header's folder unless ``--allow-outside-data``, and the voxel data must exist in
full (a missing or short ``.raw``/``.zraw``, a truncated ``.nii``/``.nii.gz`` or raw NRRD, which
SimpleITK itself would read as garbage). Any failure is one error for that file.

Voxels are read lazily by dask tasks (:mod:`.rawdata`), in blocks sized by bytes (about 64 MiB;
a huge slice in bands of rows):

* uncompressed data (``.mhd`` + ``.raw``, ``.mha``, ``.nii``, raw NRRD): memory-mapped inside
  each task (``HeaderSize``, ``HeaderSize = -1``, ``byte skip`` and big-endian data handled);
* gzip/zlib data (``.nii.gz``, ``.zraw``, compressed ``.mha``, gzip NRRD): inflated about once
  per volume, front to back, by one cursor per file and process (:mod:`.stream`);
* anything else (LIST or numbered MetaImage files, other NRRD encodings, vector NIfTI):
  SimpleITK's streaming reader (``SetExtractIndex/SetExtractSize``).

Geometry comes from SimpleITK (NIfTI already converted to LPS), so ``index_to_world`` equals
``TransformIndexToPhysicalPoint``. dtype is kept as SimpleITK reads it (int16 stays int16;
NIfTI with ``scl_slope`` comes back as float, as in SimpleITK). Multi-component pixels become
a leading channel axis ``(c, z, y, x)``; 2-D and 4-D images are refused with a clear error.
``meta``: id, reader ``itk``, format, ``origin`` (a salted hash of the path, file count and
size; the path itself only with ``--keep-phi``), and modality (with units ``HU`` for CT) when
the header names one (MetaImage ``Modality = MET_MOD_CT``).
"""
