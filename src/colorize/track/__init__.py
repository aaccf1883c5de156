"""Track: MLflow tracking URI, run lifecycle, tags, images, model logging and registry."""
