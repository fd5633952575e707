"""Nearest-neighbour knowledge (kNN-MT, kNN-KD), split as in knn-box:
  datastore     the keys (decoder states) and values (gold next tokens) of a corpus;
  index         the faiss index over the keys, and its search;
  distribution  p_kNN from neighbours and distances, and its interpolation with the model's;
  retrieval     kNN-MT's per-step retrieval, a step scorer for the beam search;
  targets       kNN-KD's search in advance: every training token's neighbours, stored.
faiss is imported only where an index is built or searched."""
