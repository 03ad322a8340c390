"""Benchmark of the connector's real pipeline against the sandbox stand-ins (`python -m bench.run`).

Processes: `run` (orchestrator) starts Azurite (node), `servers` (NordPass simulator, ingestion
stand-in, token endpoint) and, for every measurement, a fresh `child` process that runs one strategy,
so CPU time and peak RSS are the connector's own and nothing else's.
"""
