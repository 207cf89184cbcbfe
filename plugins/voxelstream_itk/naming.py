"""Which files this reader handles, and the volume id a file name gives."""

from __future__ import annotations

from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "COMPANION_EXTENSIONS", "FORMATS", "image_extension", "volume_id_for", "format_of"]

# longest first, so ".nii.gz" wins over a bare ".gz" check and ".nii"
FORMATS: dict[str, str] = {
    ".nii.gz": "NIfTI",
    ".mhd": "MetaImage",
    ".mha": "MetaImage",
    ".nii": "NIfTI",
    ".nrrd": "NRRD",
    ".nhdr": "NRRD",
}
IMAGE_EXTENSIONS: tuple[str, ...] = tuple(FORMATS)

# Data files that headers point at (.mhd -> .raw/.zraw, .nhdr -> .raw/.raw.gz, Analyze-style
# .img): they are not volumes of their own, so a folder holding them reports nothing unknown.
COMPANION_EXTENSIONS: tuple[str, ...] = (".raw", ".zraw", ".raw.gz", ".img", ".img.gz")


def image_extension(path: str | Path) -> str | None:
    """The image extension of ``path`` as written in :data:`IMAGE_EXTENSIONS` (matched
    case-insensitively), or None when the file is not one this reader handles."""
    name = Path(path).name.lower()
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    return None


def format_of(path: str | Path) -> str:
    """The format name ("MetaImage", "NIfTI", "NRRD") of an image file."""
    ext = image_extension(path)
    if ext is None:
        raise ValueError(f"{path}: not a MetaImage, NIfTI or NRRD file name")
    return FORMATS[ext]


def volume_id_for(path: str | Path) -> str:
    """The volume id of an image file: its name without the image extension.

    Only the known image extension is stripped, so dots inside the name stay:
    ``1.3.6.1.4.1.14519.5.2.1.6279.6001.1057....mhd`` gives the full series UID (as in
    LUNA16's tables) and ``scan.v2.nii.gz`` gives ``scan.v2``.
    """
    name = Path(path).name
    ext = image_extension(name)
    return name[: len(name) - len(ext)] if ext else name
