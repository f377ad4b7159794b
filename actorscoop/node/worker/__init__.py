"""A worker process: the zygote that forks it, its main loop (a stack per task), task-aware locks, threaded/async actors, direct-call endpoint."""
