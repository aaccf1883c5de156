"""Preprocess: decode -> resize -> LAB (OpenCV, float32) -> sharded memory-mapped float16 arrays."""
