"""resflex.profiling — fill a bundle's lookup table per operating point (host, Android over adb, a phone's own
benchmark) and draw its report."""
