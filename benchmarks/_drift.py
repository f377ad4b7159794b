"""What a soak measures of the processes it watches, and how it judges drift.

A *series* is a list of ``(seconds since the start, value)`` samples. After the warm-up
(the first 10% of the run, at least 15 s) a series is summed up by its first value, peak, last value,
least-squares slope per hour and *fitted growth* (slope x the time after warm-up: what the
trend line gained, steadier than last minus first). Pure functions, plus the psutil and
/dev/shm readers the soak samples with.
"""
import os

import psutil

MiB = 1 << 20
WARMUP = 0.10  # the share of the run that counts as warm-up ...
WARMUP_MIN = 15.0  # ... but at least this many seconds (pools and caches fill up first)


def warmup(duration):
    """Seconds of a run of ``duration`` seconds that count as warm-up."""
    return max(WARMUP * duration, WARMUP_MIN)


def process_figures(pid):
    """RSS and USS (bytes), open fds and threads of ``pid``; None once it has exited."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            mem = p.memory_full_info()
            return {"rss": mem.rss, "uss": mem.uss, "fds": p.num_fds(), "threads": p.num_threads()}
    except psutil.Error:
        return None


def shm_files(pids):
    """Bytes of /dev/shm held by files of these processes (a store names its arena after
    its pid: actorscoop-plasma-<pid>-...), and how many files: other nodes on the machine
    (parallel tests) do not count."""
    total = count = 0
    for name in os.listdir("/dev/shm"):
        if any(name.startswith(f"actorscoop-plasma-{pid}-") for pid in pids):
            try:
                total += os.stat(os.path.join("/dev/shm", name)).st_blocks * 512
                count += 1
            except FileNotFoundError:
                pass
    return total, count


def slope(points):
    """Least-squares slope of ``(t, v)`` points, per second (0 for fewer than two times)."""
    if len({t for t, _ in points}) < 2:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    return (sum((t - mt) * (v - mv) for t, v in points)
            / sum((t - mt) ** 2 for t, _ in points))


class Drift:
    """The summary of one series over a run of ``duration`` seconds."""

    def __init__(self, points, duration):
        warm_t = warmup(duration)
        after = [(t, v) for t, v in points if t >= warm_t] or points[-1:]
        self.warm = after[0][1]
        self.peak = max(v for _, v in points)
        self.end = points[-1][1]
        per_s = slope(after)
        self.per_hour = per_s * 3600
        self.growth = per_s * (after[-1][0] - after[0][0])
        self.ratio = self.end / self.warm if self.warm else float("nan")


def within(drift, per_hour, floor):
    """Whether a series does not grow: its slope is at most ``per_hour``, or what its trend
    line gained after warm-up is at most ``floor`` (the noise a short run cannot tell from
    a trend)."""
    return drift.per_hour <= per_hour or drift.growth <= floor


def memory_rows(series, duration):
    """Markdown rows of RSS and USS drift: one per process (``series``: name -> metric ->
    points)."""
    rows = ["| process | metric | after warm-up | peak | end | slope per hour | fitted growth | end / after warm-up |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, metrics in series.items():
        for key in ("rss", "uss"):
            d = Drift(metrics[key], duration)
            rows.append(f"| {name} | {key.upper()} | {d.warm / MiB:.1f} MiB | {d.peak / MiB:.1f} MiB | "
                        f"{d.end / MiB:.1f} MiB | {d.per_hour / MiB:+.1f} MiB | {d.growth / MiB:+.2f} MiB | "
                        f"{d.ratio:.3f} |")
    return rows


def count_rows(series, duration):
    """Markdown rows of fds and threads, one per process (``fds_net``: the fds judged)."""
    rows = ["| process | fds: after warm-up / peak / end | fds judged (net of workers): after warm-up / peak "
            "/ end, per hour, fitted growth | threads: after warm-up / peak / end, per hour |",
            "|---|---:|---:|---:|"]
    for name, metrics in series.items():
        f, n, t = (Drift(metrics[k], duration) for k in ("fds", "fds_net", "threads"))
        rows.append(f"| {name} | {f.warm} / {f.peak} / {f.end} | {n.warm} / {n.peak} / {n.end}, "
                    f"{n.per_hour:+.1f}, {n.growth:+.1f} | {t.warm} / {t.peak} / {t.end}, {t.per_hour:+.1f} |")
    return rows
