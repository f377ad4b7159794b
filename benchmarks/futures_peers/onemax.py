"""DEAP's OneMax (population 300, 40 generations), parallelized through a map function.

Used by futures_bench.py with ``actorscoop.futures.map`` and by scoop_peer.py with
``scoop.futures.map``: the same code, only the map differs. The classes are created at
import, so every worker that imports this module has them (DEAP's own rule).
"""
import random

from deap import base, creator, tools

if not hasattr(creator, "FitnessMax"):
    creator.create("FitnessMax", base.Fitness, weights=(1.0,))
    creator.create("Individual", list, fitness=creator.FitnessMax)


def eval_one_max(individual):
    return (sum(individual),)


def toolbox_with(map_fn):
    tb = base.Toolbox()
    tb.register("attr_bool", random.randint, 0, 1)
    tb.register("individual", tools.initRepeat, creator.Individual, tb.attr_bool, 100)
    tb.register("population", tools.initRepeat, list, tb.individual)
    tb.register("evaluate", eval_one_max)
    tb.register("mate", tools.cxTwoPoint)
    tb.register("mutate", tools.mutFlipBit, indpb=0.05)
    tb.register("select", tools.selTournament, tournsize=3)
    tb.register("map", map_fn)
    return tb


def run(map_fn, pop_size=300, ngen=40, seed=64):
    """DEAP's onemax.py main loop; returns the best fitness of the last generation."""
    random.seed(seed)
    tb = toolbox_with(map_fn)
    pop = tb.population(n=pop_size)
    for ind, fit in zip(pop, tb.map(tb.evaluate, pop)):
        ind.fitness.values = fit
    for _ in range(ngen):
        offspring = list(map(tb.clone, tb.select(pop, len(pop))))
        for c1, c2 in zip(offspring[::2], offspring[1::2]):
            if random.random() < 0.5:
                tb.mate(c1, c2)
                del c1.fitness.values, c2.fitness.values
        for mutant in offspring:
            if random.random() < 0.2:
                tb.mutate(mutant)
                del mutant.fitness.values
        invalid = [ind for ind in offspring if not ind.fitness.valid]
        for ind, fit in zip(invalid, tb.map(tb.evaluate, invalid)):
            ind.fitness.values = fit
        pop[:] = offspring
    return max(ind.fitness.values[0] for ind in pop)
