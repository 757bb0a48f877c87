"""gym-autoencoder: Procgen environments whose observations are learned autoencoder encodings."""

from gym_autoencoder._version import __version__
from gym_autoencoder.autoencoder import FrameAutoencoder, load_model
from gym_autoencoder.checkpoint import load_checkpoint, save_checkpoint
from gym_autoencoder.errors import CheckpointError, FrameFormatError, GymAutoencoderError
from gym_autoencoder.preprocessing import frames_to_tensor, tensor_to_frames

__all__ = [
    "__version__",
    "CheckpointError",
    "FrameAutoencoder",
    "FrameFormatError",
    "GymAutoencoderError",
    "frames_to_tensor",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "tensor_to_frames",
]
