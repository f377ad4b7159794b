"""A raylet's link to its cluster: joining the head, heartbeats, spillover, object pulls; the head's services."""
