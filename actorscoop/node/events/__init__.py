"""Task events: each raylet's record of its tasks and the head's cluster-wide view of them."""
