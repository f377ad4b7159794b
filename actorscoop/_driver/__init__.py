"""What only a driver (the user's process) runs: the API entry points, its connection and I/O thread, direct actor calls, progress on waits, remote output, the timeline."""
