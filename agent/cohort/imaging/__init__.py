"""Synthetic imaging studies (CT, MR, chest X-ray, whole-slide) for the synthetic cohort."""
