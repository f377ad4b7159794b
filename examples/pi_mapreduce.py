"""Monte Carlo estimate of pi, SCOOP style: ``futures.mapReduce`` over batches of
random points (examples/pi.py does the same with ``@asc.remote`` tasks).

Each task draws ``samples`` points in the unit square and counts those inside the
quarter circle; ``mapReduce`` adds the counts up, starting in the tasks themselves.

    python -m actorscoop -n 4 examples/pi_mapreduce.py [batches] [samples]
"""
import random
import sys
from operator import add

from actorscoop import futures


def inside(seed_and_samples):
    seed, samples = seed_and_samples
    rng = random.Random(seed)  # one stream per batch: the same answer on any run
    return sum(rng.random() ** 2 + rng.random() ** 2 <= 1.0 for _ in range(samples))


def estimate(batches=64, samples=20_000):
    hits = futures.mapReduce(inside, add, [(seed, samples) for seed in range(batches)])
    return 4.0 * hits / (batches * samples)


if __name__ == "__main__":
    batches, samples = (int(x) for x in (sys.argv[1:3] or (64, 20_000)))
    print(f"pi ~= {estimate(batches, samples):.5f} from {batches * samples:,} points")
