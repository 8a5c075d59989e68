"""TEZip compression: the encoder stages (each a symmetric codec) and the compress glue."""
