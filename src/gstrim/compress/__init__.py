"""c3dgs end-to-end compression (Niedermayr et al., CVPR 2024): sensitivity-aware vector clustering,
quantisation-aware fine-tuning and a compact, entropy-coded file (`.gsz`)."""
