"""The log line format of the CLI and of the processes it starts (search processes log the
same way, so one run's lines interleave into one readable timeline)."""

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
