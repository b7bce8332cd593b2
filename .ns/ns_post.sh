#!/bin/bash
# manual parts of the namespace move; run from the repo root after nsrename.py
set -e
for p in schemas ingest detectors alerts simulators; do [ -L tocsin/$p ] || ln -s ../$p tocsin/$p; done
sed -i 's|"-m", "simulators\.|"-m", "tocsin.simulators.|g' deploy/docker-compose.yml
sed -i 's|python -m simulators\.|python -m tocsin.simulators.|g' docs/*.md README.md
sed -i 's|`detectors\.kernels\.seismic\.pd_profile`|`tocsin.detectors.kernels.seismic.pd_profile`|' docs/detection-rules.md
sed -i 's|(`python -m alerts.api`|(`python -m tocsin.api`|' docs/console.md
sed -i 's|\t$(BIN)/mypy tocsin ingest detectors alerts schemas simulators|\t$(BIN)/mypy tocsin|' Makefile
