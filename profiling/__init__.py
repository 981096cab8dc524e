"""resflex.profiling — fill the bundle's lookup table per operating point (later issue)."""
