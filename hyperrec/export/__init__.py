"""`hyperrec export`: a training run -> a registry version, in named steps (ONNX + parity, index, served
ranker, evaluation, Triton repository, publish)."""
