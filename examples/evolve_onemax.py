"""An evolutionary algorithm with DEAP, its evaluations spread over the workers.

The classic OneMax problem: evolve bit strings towards all ones. The only line that is
about parallelism is ``toolbox.register("map", futures.map)``: DEAP's algorithms call
``toolbox.map`` to evaluate a generation, and actorscoop's ``futures.map`` runs those
evaluations as tasks (in chunks, results in order), exactly as SCOOP's does.

    python -m actorscoop -n 4 examples/evolve_onemax.py [generations] [population]
    python examples/evolve_onemax.py          # also works: an embedded node starts
"""
import random
import sys

from deap import algorithms, base, creator, tools

from actorscoop import futures

# DEAP's classes are made at import, outside the __main__ block, so that every worker
# knows them too (under the launcher each worker runs this file's top level first).
creator.create("FitnessMax", base.Fitness, weights=(1.0,))
creator.create("Individual", list, fitness=creator.FitnessMax)

LENGTH = 100


def evaluate(individual):
    """The fitness: how many ones. DEAP wants a tuple."""
    return (sum(individual),)


toolbox = base.Toolbox()
toolbox.register("bit", random.randint, 0, 1)
toolbox.register("individual", tools.initRepeat, creator.Individual, toolbox.bit, LENGTH)
toolbox.register("population", tools.initRepeat, list, toolbox.individual)
toolbox.register("evaluate", evaluate)
toolbox.register("mate", tools.cxTwoPoint)
toolbox.register("mutate", tools.mutFlipBit, indpb=0.05)
toolbox.register("select", tools.selTournament, tournsize=3)
toolbox.register("map", futures.map)  # the parallel part


def main(generations=40, size=300, seed=64):
    random.seed(seed)
    population = toolbox.population(n=size)
    hall_of_fame = tools.HallOfFame(1)
    stats = tools.Statistics(lambda ind: ind.fitness.values[0])
    stats.register("max", max)
    population, log = algorithms.eaSimple(population, toolbox, cxpb=0.5, mutpb=0.2,
                                          ngen=generations, stats=stats,
                                          halloffame=hall_of_fame, verbose=False)
    best = hall_of_fame[0]
    print(f"best of {generations} generations of {size}: {sum(best)} ones out of {LENGTH} "
          f"(generation 0: {log[0]['max']:.0f})")
    return best


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
