"""`make bench`: Nimbus measured side by side with its floors and a peer, in one run.

`python -m bench.run` (what `make bench` runs) starts its own local cluster, runs each section of
`bench.sections`, and writes bench/results/latest.json, a dated copy, latest.md and latest.png.
The load itself comes from `python -m bench.loadgen`, a separate process.
"""
