"""What the tests and the benchmarks share, never imported by the platform itself.

`environment`: the repository, the venv, a clean environment and `covertype` runs;
`servers`: real servers on free ports (MLflow, an S3 server); `data`: generated and real
rows, filled data DBs, training settings; `fakes`: a scripted stand-in source API;
`load`: a bounded load on `/predict`; `browser`: headless Chromium.
Benchmarks put the repository on `sys.path` and import from here too.
"""
