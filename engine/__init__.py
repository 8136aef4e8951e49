"""Music-collection analysis: scanning, decoding, descriptors, build pipeline and CLI."""
