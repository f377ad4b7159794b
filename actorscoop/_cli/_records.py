"""What ``--debug`` and ``--profile`` leave behind, gathered at the end of a launch:
the per-worker trace files (``debug/<host>-<pid>.jsonl``, written by the workers as they
go) and the per-worker profiles merged into ``profile/merged.prof`` (pstats)."""
import glob
import os

from .._common._worker_settings import ENV_PROFILE, ENV_TRACE


def finish(logger, env=os.environ):
    """Stop the node first (so that every worker has written its files); then merge the
    profiles and say where the files are."""
    import actorscoop
    if actorscoop.is_initialized():
        actorscoop.shutdown()
    if env.get(ENV_TRACE):
        traces = sorted(glob.glob(os.path.join(env[ENV_TRACE], "*.jsonl")))
        logger.info("--debug: a trace of every task in %d file(s) in %s", len(traces),
                       env[ENV_TRACE])
    if env.get(ENV_PROFILE):
        merged = merge_profiles(env[ENV_PROFILE])
        if merged:
            logger.info("--profile: per-worker profiles in %s, merged into %s (read it "
                           "with python -m pstats %s)", env[ENV_PROFILE], merged, merged)
        else:
            logger.info("--profile: no task ran in a worker, so there is no profile")


def merge_profiles(directory, name="merged.prof"):
    """Merge every ``*.prof`` in ``directory`` (but ``name``) into ``directory/name``;
    return its path, or None when there is none."""
    import pstats
    files = sorted(f for f in glob.glob(os.path.join(directory, "*.prof"))
                   if os.path.basename(f) != name)
    if not files:
        return None
    stats = pstats.Stats(files[0])
    for f in files[1:]:
        stats.add(f)
    out = os.path.join(directory, name)
    stats.dump_stats(out)
    return out
