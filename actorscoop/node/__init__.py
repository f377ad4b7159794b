"""I/O shells of a node: the raylet, its worker pool, the zygote and the worker main."""
