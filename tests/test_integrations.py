"""Libraries that parallelize through a map function or an Executor, run unchanged on
actorscoop: SciPy (workers=futures.map), dask (scheduler=executor), emcee/dynesty
(pool=), nevergrad (executor=),
DEAP (toolbox.register("map", futures.map)), joblib and scikit-learn (the joblib backend).
Each test is skipped, with the reason, when its library is not installed."""
import operator
import random

import numpy as np
import pytest

from actorscoop import futures

try:  # DEAP's classes must exist at import time in every process (workers import us)
    from deap import base, creator, tools
    if not hasattr(creator, "AscFitnessMax"):
        creator.create("AscFitnessMax", base.Fitness, weights=(1.0,))
        creator.create("AscIndividual", list, fitness=creator.AscFitnessMax)
except ImportError:
    base = None


def log_prob(x):
    return -0.5 * float(np.sum(x ** 2))


def loglike(x):
    return -0.5 * float(np.sum(x ** 2))


def prior_transform(u):
    return 10.0 * u - 5.0


def sphere(x):
    return float(np.sum((np.asarray(x) - 0.5) ** 2))


def one_max(individual):
    return (sum(individual),)


def inner_parallel(n):
    from joblib import Parallel, delayed
    return sum(Parallel(n_jobs=2)(delayed(operator.mul)(i, i) for i in range(n)))


def test_scipy_differential_evolution_workers(node):
    optimize = pytest.importorskip("scipy.optimize")
    kwargs = dict(maxiter=20, seed=1, polish=False, updating="deferred")
    parallel = optimize.differential_evolution(optimize.rosen, [(0, 2)] * 3,
                                               workers=futures.map, **kwargs)
    serial = optimize.differential_evolution(optimize.rosen, [(0, 2)] * 3, **kwargs)
    assert parallel.nfev == serial.nfev and np.allclose(parallel.x, serial.x)


def test_dask_compute_with_an_executor(node):
    dask = pytest.importorskip("dask")
    import dask.array as da
    x = da.arange(1000, chunks=100)
    with futures.Executor() as ex:
        total, = dask.compute((x ** 2).sum(), scheduler=ex)
        assert total == sum(i * i for i in range(1000))
        lazy = [dask.delayed(operator.add)(i, 1) for i in range(10)]
        assert dask.compute(*lazy, scheduler=ex) == tuple(range(1, 11))


def test_emcee_pool(node):
    emcee = pytest.importorskip("emcee")
    rng = np.random.default_rng(0)
    with futures.Executor() as ex:
        sampler = emcee.EnsembleSampler(8, 2, log_prob, pool=ex)
        sampler.run_mcmc(rng.normal(size=(8, 2)), 20, progress=False)
    assert sampler.get_chain().shape == (20, 8, 2)


def test_dynesty_pool(node):
    dynesty = pytest.importorskip("dynesty")
    with futures.Executor() as ex:
        sampler = dynesty.NestedSampler(loglike, prior_transform, 2, nlive=40, pool=ex,
                                        queue_size=ex.size, rstate=np.random.default_rng(1))
        sampler.run_nested(maxiter=150, print_progress=False)
    assert sampler.results.niter > 0


def test_nevergrad_executor(node):
    ng = pytest.importorskip("nevergrad")
    with futures.Executor() as ex:
        opt = ng.optimizers.OnePlusOne(parametrization=2, budget=30, num_workers=ex.size)
        rec = opt.minimize(sphere, executor=ex, batch_mode=False)
    assert sphere(rec.value) < sphere([10.0, 10.0])


def test_deap_one_max_with_futures_map(node):
    pytest.importorskip("deap")
    from deap import algorithms
    random.seed(3)
    toolbox = base.Toolbox()
    toolbox.register("attr_bool", random.randint, 0, 1)
    toolbox.register("individual", tools.initRepeat, creator.AscIndividual, toolbox.attr_bool, 50)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", one_max)
    toolbox.register("mate", tools.cxTwoPoint)
    toolbox.register("mutate", tools.mutFlipBit, indpb=0.05)
    toolbox.register("select", tools.selTournament, tournsize=3)
    toolbox.register("map", futures.map)
    pop = toolbox.population(n=60)
    start = max(ind.fitness.values[0] if ind.fitness.valid else 0 for ind in pop)
    pop, _log = algorithms.eaSimple(pop, toolbox, cxpb=0.5, mutpb=0.2, ngen=5, verbose=False)
    best = max(ind.fitness.values[0] for ind in pop)
    assert best >= start and all(ind.fitness.valid for ind in pop)


@pytest.fixture
def joblib_backend():
    pytest.importorskip("joblib")
    import actorscoop.joblib
    actorscoop.joblib.register()
    return "actorscoop"


def test_joblib_parallel_and_nesting(node, joblib_backend):
    import joblib
    from joblib import Parallel, delayed
    with joblib.parallel_config(backend=joblib_backend):
        assert Parallel(n_jobs=-1)(delayed(pow)(i, 2) for i in range(20)) == \
            [i * i for i in range(20)]
        assert Parallel(n_jobs=2)(delayed(inner_parallel)(n) for n in range(4)) == \
            [sum(i * i for i in range(n)) for n in range(4)]
        with pytest.raises(ZeroDivisionError):
            Parallel(n_jobs=2)(delayed(operator.truediv)(1, i) for i in range(-2, 2))
        assert list(Parallel(n_jobs=2, return_as="generator")(
            delayed(abs)(-i) for i in range(5))) == [0, 1, 2, 3, 4]


def test_joblib_n_jobs_minus_one_is_the_cluster(node, joblib_backend):
    from actorscoop.joblib import ActorScoopBackend
    assert ActorScoopBackend().effective_n_jobs(-1) == 2
    assert ActorScoopBackend().effective_n_jobs(-2) == 1


def test_sklearn_grid_search_on_the_backend(node, joblib_backend):
    pytest.importorskip("sklearn")
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC
    X, y = load_iris(return_X_y=True)
    grid = {"C": [0.1, 1, 10], "gamma": ["scale", 0.1]}
    with joblib.parallel_config(backend=joblib_backend):
        gs = GridSearchCV(SVC(), grid, cv=3, n_jobs=-1).fit(X, y)
    serial = GridSearchCV(SVC(), grid, cv=3, n_jobs=1).fit(X, y)
    assert gs.best_params_ == serial.best_params_
    assert np.allclose(gs.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])
