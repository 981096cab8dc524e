"""resflex.mobile.bundle — the bottom layer, torch-free: the bundle schema (`schema`: manifest.json, lut.json,
device_profile.json) and bundle I/O (`io`: Bundle.open, verified file access, atomic writes, sha256, sizes, zip).
Everything else imports it; it imports nothing else of resflex."""
