"""Essentia's pre-trained models as ONNX: registry, fetching, export, mel front-end, inference."""
