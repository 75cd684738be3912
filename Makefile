# Two commands for a new machine: `make demo` and `make test`. Both create .venv and
# install what is missing first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROMETHEUS := .tools/bin/prometheus

.PHONY: setup system-packages demo test lint typecheck unit bench clean

setup: system-packages $(STAMP)

# The embedded PACS: Debian's Orthanc with its DICOMweb, GDCM (JPEG 2000) and WSI plugins, and
# OpenSlide. Installed only when a file is missing (as root, or through sudo). Debian's install
# tries to start its own orthanc service (denied in containers, harmless elsewhere): ours runs
# beside it on another port, and our health check tells the two apart. A C compiler builds the
# small shim that gives Orthanc's HTTP threads enough stack for GDCM's JPEG 2000 decoder.
# PostgreSQL's binaries run a throwaway cluster in the tests of the Postgres checkpointer.
# Chromium runs the browser tests of the SMART app (playwright drives it; no browser download).
# Tesseract (with its English data) reads scanned lab-report pages (tools/labs/pdf/ocr.py).
ORTHANC_DEBS  := orthanc orthanc-dicomweb orthanc-wsi orthanc-gdcm libopenslide0 gcc libc6-dev postgresql chromium \
	tesseract-ocr tesseract-ocr-eng
ORTHANC_FILES := /usr/sbin/Orthanc \
	/usr/share/orthanc/plugins/libOrthancDicomWeb.so \
	/usr/share/orthanc/plugins/libOrthancGdcm.so \
	/usr/share/orthanc/plugins/libOrthancWSI.so

system-packages:
	@missing=0; for f in $(ORTHANC_FILES); do test -e $$f || missing=1; done; \
	ldconfig -p 2>/dev/null | grep -q 'libopenslide\.so\.0' || missing=1; \
	command -v cc >/dev/null || missing=1; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing=1; \
	test -x /usr/bin/chromium || missing=1; \
	test -x /usr/bin/tesseract || missing=1; \
	test -e /usr/share/tesseract-ocr/5/tessdata/eng.traineddata || missing=1; \
	if [ $$missing = 1 ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null; then sudo="sudo"; \
	  else echo "Orthanc is missing and we are not root: apt-get install $(ORTHANC_DEBS)" >&2; exit 1; fi; \
	  $$sudo apt-get update && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(ORTHANC_DEBS); \
	fi

# Prometheus's promtool and server evaluate the alerting rules in their tests (deploy/helm/chartagent/files/):
# both are taken out of Debian's prometheus package into .tools/bin, not installed: installed, the
# package would also start a Prometheus server on this machine. (apt's lists are refreshed only if
# the package cannot be downloaded.)
$(PROMETHEUS):
	@if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	tmp=$$(mktemp -d) && cd $$tmp && \
	{ apt-get download prometheus >/dev/null 2>&1 || { $$sudo apt-get update && apt-get download prometheus; }; } && \
	dpkg-deb -x prometheus_*.deb root && mkdir -p $(dir $(abspath $(PROMETHEUS))) && \
	install -m 755 root/usr/bin/promtool root/usr/bin/prometheus $(dir $(abspath $(PROMETHEUS))); \
	rc=$$?; rm -rf $$tmp; exit $$rc

# torch is pinned to the CPU wheel that lies on this machine's disk: an unpinned torch
# would pull several GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,gpu,postgres]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/chartagent demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench

test: lint typecheck $(PROMETHEUS)
	$(VENV)/bin/pytest

# Every benchmark of the project; each comparison ends with `bench <name>: <ratio>x (...)`.
# The MedGemma benchmark runs its tiny configuration on the CPU here; on a GPU machine run
# `python bench/bench_medgemma_gpu.py` (the real 4B architecture, random weights).
bench: setup
	$(PY) bench/bench_fhir_gather.py
	$(PY) bench/bench_record_reuse.py
	$(PY) bench/bench_fhir_write.py
	$(PY) bench/bench_ct_prepare.py
	$(PY) bench/bench_dicomweb_retrieve.py
	$(PY) bench/bench_wsi_patches.py
	$(PY) bench/bench_lab_pdf_extract.py
	$(PY) bench/bench_bad_files.py
	$(PY) bench/bench_cli_start.py
	$(PY) bench/bench_summarize_plan.py
	$(PY) bench/bench_summarize_throughput.py
	$(PY) bench/bench_jobs_temporal.py
	$(PY) bench/bench_ledger_scale.py
	$(PY) bench/bench_chat_stream.py
	$(PY) bench/bench_service_summary.py
	$(PY) bench/bench_request_metrics.py
	$(PY) bench/bench_authz.py
	$(PY) bench/bench_ehr_proxy.py
	$(PY) bench/bench_cds_hook.py
	$(PY) bench/bench_medgemma_gpu.py --config tiny --device cpu --quick

clean:
	rm -rf $(VENV) .tools .chartagent .pytest_cache .mypy_cache .ruff_cache
