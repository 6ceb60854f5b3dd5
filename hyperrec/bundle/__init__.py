"""What a registry version is and how it runs outside HTTP: the typed manifest, file names, write/load,
the ONNX/Triton models, retrieval, request-time features, the user state."""
