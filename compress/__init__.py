"""The compress direction's glue: read frames (frames/) → code (sequence/, stages/) → write the archive
(archive/); batch mode and the --report PNG."""
