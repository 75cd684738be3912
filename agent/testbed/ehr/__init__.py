"""The EHR stand-in: a SMART App Launch 2.2 authorization server, a FHIR proxy that enforces each
token's scopes and patient compartment in front of the embedded FHIR server (sekmet checks
neither), and a launcher that starts EHR launches of the app, as SMART Health IT's launcher does.

Test bed only: a production EHR brings its own. Run as its own loopback process:
`python -m agent.testbed.ehr --config <file>` (written by `chartagent stack up` or the test
fixtures, `agent.testbed.stack.ehr_server`).
"""
