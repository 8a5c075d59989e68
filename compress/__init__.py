"""The compress direction's glue: read frames → code (sequence/, stages/) → write the archive (archive/); batch mode and the --report PNG."""
