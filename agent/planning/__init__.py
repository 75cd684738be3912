"""What a summarization run has to do for a patient: the pure worklist the planning graph fans out."""
