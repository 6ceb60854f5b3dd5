"""Trainable recommenders only, one per file: baselines, SASRec, two-tower, the ranker and the offline
pipeline (+ its features), and the FAISS item index they retrieve with."""
