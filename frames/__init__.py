"""Frames in and out of files: read.py reads a sequence (a folder of images or a multi-page TIFF),
write.py writes decoded frames back exactly (lossy formats become PNG)."""
