"""Shared low pieces: ids, error values, serialization, session files, starting a node, drop counters."""
