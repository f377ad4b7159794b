"""A scikit-learn grid search whose fits run as actorscoop tasks (through joblib).

scikit-learn parallelizes with joblib; ``actorscoop.joblib`` is a joblib backend, so
``GridSearchCV(..., n_jobs=-1)`` inside ``parallel_config(backend="actorscoop")`` runs
each cross-validation fit as a task on the node (or the cluster).

    python examples/grid_search.py
"""
import joblib
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

import actorscoop.joblib


def main():
    actorscoop.joblib.register()
    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]
    grid = {"C": [1, 10], "gamma": [1e-3, 1e-4]}
    with joblib.parallel_config(backend="actorscoop"):
        search = GridSearchCV(SVC(), grid, cv=3, n_jobs=-1).fit(X, y)
    print(f"best {search.best_params_} accuracy {search.best_score_:.3f} "
          f"({len(search.cv_results_['params']) * 3} fits)")
    return search


if __name__ == "__main__":
    main()
