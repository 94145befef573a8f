"""Two-stage fine-tuning of the cross-encoder (kept apart from inference; needs the
``train`` extra: datasets, accelerate)."""
