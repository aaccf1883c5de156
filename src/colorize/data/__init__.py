"""Data: sources of photos, robust decoding, the split manifest, the LAB store."""
