"""Wall-clock timing with an optional device-synchronise hook; warm-up runs are not counted."""
import statistics
import time

from .progress import Progress


class Timer(object):
    """`with Timer(sync) as t: ...` then `t.seconds`.

    `sync` (e.g. torch.cuda.synchronize) runs before the clock starts and before it stops, so
    that asynchronous device work queued inside the block is counted, and earlier work is not.
    """

    def __init__(self, sync=None):
        self.sync = sync
        self.seconds = None

    def __enter__(self):
        if self.sync is not None:
            self.sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.sync is not None:
            self.sync()
        self.seconds = time.perf_counter() - self._start
        return False


def time_runs(fn, repeats=1, warmup=1, sync=None):
    """Call fn() `warmup` times untimed, then `repeats` times timed; return the list of seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        with Timer(sync) as t:
            fn()
        times.append(t.seconds)
    return times


def time_passes(run_pass, repeats, sync=None, steps=None, label="pass"):
    """Time `repeats` calls of run_pass(progress), each with its own progress bar of `steps`
    steps (none when steps is None); return the last call's result and summarize(seconds)."""
    times, result = [], None
    for i in range(repeats):
        progress = Progress(steps, "%s %d/%d" % (label, i + 1, repeats)) if steps else None
        with Timer(sync) as t:
            result = run_pass(progress)
        if progress is not None:
            progress.done()
        times.append(t.seconds)
    return result, summarize(times)


def summarize(times):
    """Median and spread of repeated measurements, for result records."""
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "repeats": len(times),
        "seconds": list(times),
    }
