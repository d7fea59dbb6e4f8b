"""A local scale-out stack on loopback — a throwaway PostgreSQL cluster, a Prefect server, process workers — for rehearsals, tests and benchmarks."""
