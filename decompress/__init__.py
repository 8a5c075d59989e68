"""The decompress direction's glue, compress/'s mirror: read the archive → decode → verify → write frames; batch mode."""
