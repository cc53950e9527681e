"""Fine-tuning with transformers.Trainer in one process or several (accelerate)."""
