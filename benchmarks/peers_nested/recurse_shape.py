"""A whole program of SCOOP's examples/recurse.py shape (our own code): the script's
root maps 2 calls, each maps 2, ... to depth 12 (8,190 tasks), then prints the result.
Run as ``python -m scoop -n 2 recurse_shape.py`` or ``python -m actorscoop -n 2
recurse_shape.py``; ACTORSCOOP=1 in the environment picks actorscoop's futures."""
import os

if os.environ.get("ACTORSCOOP") == "1":
    from actorscoop import futures
else:
    from scoop import futures

DEPTH = 12


def level(d):
    return 1 if d == 0 else sum(futures.map(level, [d - 1] * 2))


if __name__ == "__main__":
    print(f"2^{DEPTH} = {level(DEPTH)}")
