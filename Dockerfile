# klingflow image: ffmpeg and fonts, klingflow with its pinned dependencies, a non-root user, and a
# Prefect worker on the "klingflow" work pool as the default command (needs PREFECT_API_URL).
#
# Docker cannot run on the project's build machines, so nothing is installed here except through
# scripts/install-system.sh and scripts/install-python.sh, the two scripts scripts/setup.sh runs
# on every CI run (in the same order); tests/test_image.py checks that this stays so.
FROM python:3.11-slim-bookworm

WORKDIR /opt/klingflow
# The Debian packages first: this layer stays cached while the sources change.
COPY scripts/install-system.sh ./scripts/
RUN scripts/install-system.sh --clean

COPY scripts/install-python.sh ./scripts/
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline ./pipeline
COPY flows ./flows
RUN scripts/install-python.sh python3 --no-cache

# Runs write .klingflow/runs (KLINGFLOW_RUNS_DIR overrides it), .klingflow-sandbox and renders
# relative to the working directory, so the user owns it.
RUN useradd --create-home --uid 1000 --user-group klingflow \
 && install -d -o klingflow -g klingflow /work /work/.klingflow /work/renders
WORKDIR /work
COPY configs ./configs

USER klingflow
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false
ENTRYPOINT ["klingflow"]
CMD ["worker", "--pool", "klingflow"]
