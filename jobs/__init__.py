"""Training jobs that streamtune ships as templates. Each module implements ``streamtune.Job``."""
