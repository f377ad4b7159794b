"""SCOOP's ``shared`` module: constants set once and readable from every task.

    from actorscoop import futures, shared

    def scale(x):
        return x * shared.getConst("factor")

    if __name__ == "__main__":
        shared.setConst(factor=3)
        print(list(futures.map(scale, range(5))))

Large constants (arrays, models) go through the object store once and are read
zero-copy by the tasks of the node. Redefining a constant raises TypeError.
"""
from ._futures._shared import get_const as getConst, set_const as setConst

__all__ = ["setConst", "getConst"]
