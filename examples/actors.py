"""Actors: a stateful service that tasks talk to.

``@asc.remote`` on a class makes an actor: one process holding the instance, running its
method calls one at a time, in order. Here a parameter server keeps a model's weights;
worker tasks fetch them, compute an update on their shard of data, and push it back.

    python examples/actors.py [rounds]
"""
import sys

import numpy as np

import actorscoop as asc


@asc.remote
class ParameterServer:
    def __init__(self, size):
        self.weights = np.zeros(size)
        self.updates = 0

    def get(self):
        return self.weights

    def push(self, gradient, rate=0.5):
        self.weights -= rate * gradient
        self.updates += 1
        return self.updates


@asc.remote
def gradient(server, shard_seed, target):
    """Fetch the weights, return the gradient of 0.5 * |w - target|^2 on a noisy shard."""
    w = asc.get(server.get.remote())
    noise = np.random.default_rng(shard_seed).normal(0, 0.01, w.shape)
    return w - target + noise


def main(rounds=10, shards=4):
    target = np.arange(8, dtype=float)
    server = ParameterServer.remote(len(target))
    for r in range(rounds):
        grads = asc.get([gradient.remote(server, r * shards + s, target) for s in range(shards)])
        asc.get(server.push.remote(np.mean(grads, axis=0)))
    w = asc.get(server.get.remote())
    print(f"after {rounds} rounds: distance to target {np.linalg.norm(w - target):.3f}, "
          f"{asc.get(server.push.remote(np.zeros_like(w), 0.0)) - 1} updates")
    return w


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
