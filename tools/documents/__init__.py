"""Clinical documents from the record: DocumentReference attachments fetched safely, lab-report
PDFs turned into grounded, deduplicated FHIR Observations (``ingest_lab_documents``)."""
