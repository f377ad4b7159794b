"""mapReduce and mapScan over data: word counts of text chunks.

``futures.mapReduce(f, op, chunks)`` maps ``f`` over the chunks in tasks and folds the
results with ``op`` (associative), folding inside the tasks first; ``futures.mapScan``
returns every running fold instead (here: the vocabulary size after each chunk).

    python -m actorscoop -n 4 examples/map_reduce_words.py [FILE]
"""
import sys
from collections import Counter

from actorscoop import futures

TEXT = """It was the best of times, it was the worst of times, it was the age of wisdom,
it was the age of foolishness, it was the epoch of belief, it was the epoch of
incredulity, it was the season of Light, it was the season of Darkness, it was the
spring of hope, it was the winter of despair."""


def words(chunk):
    return Counter(w.strip(".,;:!?\"'").lower() for w in chunk.split() if w.strip(".,;:!?\"'"))


def merge(a, b):
    return a + b


def vocabulary(a, b):
    return a | b


def word_set(chunk):
    return set(words(chunk))


def main(text):
    lines = [line for line in text.splitlines() if line.strip()]
    chunks = lines  # one task per line
    counts = futures.mapReduce(words, merge, chunks)
    growth = [len(v) for v in futures.mapScan(word_set, vocabulary, chunks)]
    print("most common:", ", ".join(f"{w} {n}" for w, n in counts.most_common(3)))
    print("vocabulary after each chunk:", growth)
    return counts, growth


if __name__ == "__main__":
    main(open(sys.argv[1]).read() if len(sys.argv) > 1 else TEXT)
