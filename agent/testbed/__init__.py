"""The test bed: the synthetic cohort generator, the embedded stack's control (sekmet-fhir and
Orthanc as local processes) and the loaders of external datasets.

It serves the demo, the tests and the benchmarks. The agent itself (graphs, nodes, jobs, tools,
FHIR adapters) never imports it: a deployment points ChartAgent at a real EHR and PACS, and
`tests/unit/test_testbed_fence.py` keeps the fence.
"""
