"""Frames in and out of files: source.py reads a sequence lazily, frame by frame (a folder of images,
a multi-page TIFF, an HDF5/NeXus dataset: hdf5.py), sink.py writes one back frame by frame and
publishes it all together; read.py reads and checks images (read_sequence: a whole sequence in
memory), write.py writes decoded frames back exactly (lossy formats become PNG)."""
