"""Wall-clock timing with an optional device-synchronise hook; warm-up runs are not counted."""
import statistics
import time


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


def summarize(times):
    """Median and spread of repeated measurements, for result records."""
    times = sorted(times)
    return {
        "median": statistics.median(times),
        "min": times[0],
        "max": times[-1],
        "repeats": len(times),
    }
