"""The raylet: a node's event loop, its tables (tasks, objects, workers, actors, key-value store), the memory monitor, status reports."""
