"""MedGemma runtime: one async model interface, backends, per-modality tasks (prompt + strict parser)."""
