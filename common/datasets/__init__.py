"""The data wing: where every data set and weight file comes from, how it is verified and
cached, and the note of what each run used. `sources` (fetching, checksums, caches), `provenance`
(what a run used), `cifar10`, `imdb`, `resnet50_weights`."""
