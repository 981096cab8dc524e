"""resflex.convert — turn a trained checkpoint into a mobile bundle (later issue)."""
