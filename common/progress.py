"""Progress lines for long loops: printed at most every few seconds, cheap enough for timed loops."""
import sys
import time


class Progress(object):
    """`p = Progress(total, "epoch 1")`, then `p.step()` per batch; `p.done()` at the end.

    `step(loss_fn)` takes an optional callable returning the current loss, called only when a
    line is printed (so a GPU framework synchronises only then).
    """

    def __init__(self, total, label, every_seconds=15.0):
        self.total = total
        self.label = label
        self.every = every_seconds
        self.count = 0
        self.start = self.last = time.time()

    def step(self, loss_fn=None):
        self.count += 1
        if time.time() - self.last >= self.every:
            self._line(loss_fn)

    def _line(self, loss_fn=None):
        # Fetch the loss first: on an asynchronous framework that waits for the queued work,
        # so the elapsed time printed after it is true.
        loss = "" if loss_fn is None else ", loss %.4f" % float(loss_fn())
        self.last = now = time.time()
        print("%s: %d/%d batches (%3.0f%%), %.0fs%s" % (
            self.label, self.count, self.total, 100.0 * self.count / max(self.total, 1),
            now - self.start, loss))
        sys.stdout.flush()

    def done(self, loss_fn=None):
        self._line(loss_fn)
