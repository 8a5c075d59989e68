"""TEZip decompression: the mirror glue and output writing."""
