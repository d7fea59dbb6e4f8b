# klingflow image: ffmpeg, fonts for the sandbox's captions, klingflow with pinned dependencies,
# and a non-root user. Docker cannot run on the project's build machines, so CI installs the same
# pieces outside Docker through scripts/setup.sh (apt-get ffmpeg + fonts, pip -c constraints.txt).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline ./pipeline
COPY flows ./flows
COPY configs ./configs
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --create-home --uid 1000 klingflow

USER klingflow
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false
ENTRYPOINT ["klingflow"]
CMD ["--help"]
