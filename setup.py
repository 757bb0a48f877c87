"""gym-autoencoder: learned, compact observations for Procgen games."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
SUBPACKAGES = {
    folder: f"gym_autoencoder.{folder}"
    for folder in ("checkpoints", "data_generation", "model_stubs", "training")
}
version: dict[str, str] = {}
exec((HERE / "gym_autoencoder" / "_version.py").read_text(), version)

setup(
    name="gym-autoencoder",
    version=version["__version__"],
    description="Gymnasium environments for Procgen Heist whose observations are autoencoder encodings",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # One import name: the repository's top-level folders install as subpackages of gym_autoencoder.
    packages=[*find_packages(include=["gym_autoencoder", "gym_autoencoder.*"]), *SUBPACKAGES.values()],
    package_dir={name: folder for folder, name in SUBPACKAGES.items()},
    package_data={
        "gym_autoencoder.checkpoints": ["*.pt", "*.png"],
        "gym_autoencoder.training": ["*.yaml"],
    },
    entry_points={
        "console_scripts": [
            "gym-autoencoder-generate = gym_autoencoder.data_generation.cli:main",
            "gym-autoencoder-train = gym_autoencoder.training.autoencoder_training:main",
            "gym-autoencoder-evaluate = gym_autoencoder.training.evaluate:main",
            "gym-autoencoder-demo = gym_autoencoder.demo:main",
        ],
    },
    install_requires=[
        "torch>=2.1,<3",
        "numpy>=1.24,<2",
        "gymnasium>=1.0,<2",
        "procgen-mirror==0.10.7",
        "torchinfo>=1.8",
        "onnxruntime>=1.20",  # runs the encoders on CPU (gym_autoencoder.inference)
        "onnx>=1.16,<1.19",  # torch.onnx.export needs it; 1.19 needs numpy 2
        "opencv-python-headless>=4.8,<4.12",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
    ],
    extras_require={
        "test": ["pytest>=7", "stable-baselines3>=2.3", "scikit-image>=0.22", "cma>=3.3"],
        "examples": ["stable-baselines3>=2.3", "cma>=3.3"],
        # RLlib pins its own Gymnasium (ray 2.60: gymnasium==1.2.2): install it in a virtual environment of its
        # own. pyarrow 26 (which ray.tune imports) needs NumPy 2, which procgen cannot use.
        "rllib": ["ray[rllib]==2.60.0", "pyarrow>=17,<26"],
    },
)
