"""The pixel formats TEZip keeps — colour mode → channels and sample dtype of the (H, W, C) arrays
every part of the pipeline passes around — and the image file name extensions it reads and writes."""

import hashlib

import numpy as np

# TEZip's name for unsigned 16-bit grayscale frames (Pillow's name for its little-endian form).
GRAY16 = "I;16"

# Mode -> channels of the (H, W, C) arrays we hand out.
SUPPORTED_MODES: dict[str, int] = {"RGB": 3, "L": 1, GRAY16: 1}

# Mode -> dtype of those arrays' samples.
MODE_DTYPES: dict[str, np.dtype] = {
    "RGB": np.dtype(np.uint8),
    "L": np.dtype(np.uint8),
    GRAY16: np.dtype(np.uint16),
}

# File name extensions we accept (compared lower-cased). Each maps to a Pillow format that this
# machine's Pillow reads; the content is checked with Pillow too, so a renamed text file is
# still caught.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".bmp",
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".jp2",
    ".j2k",
    ".ppm",
    ".pgm",
    ".pnm",
    ".tif",
    ".tiff",
    ".webp",
)

TIFF_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff")

# HDF5 / NeXus files (a sequence is one dataset of the file: frames.hdf5); any file name works
# with an explicit dataset path, FILE::/entry/data/data.
HDF5_EXTENSIONS: tuple[str, ...] = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5")


def max_value_of(dtype):
    """The largest pixel value of frames of this dtype: 255 for uint8, 65535 for uint16."""
    return int(np.iinfo(dtype).max)


def frame_checksum(pixels):
    """Checksum of the pixels the decoder must produce: C-order little-endian bytes of one frame
    (numpy array), so 16-bit archives check the same on machines of either byte order."""
    data = pixels.astype(pixels.dtype.newbyteorder("<"), order="C", copy=False)
    return hashlib.blake2b(memoryview(data).cast("B"), digest_size=8).hexdigest()
