"""Trained weights shipped with gym_autoencoder (installed as ``gym_autoencoder.checkpoints``)."""
