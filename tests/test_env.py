"""The scalar environments: Gymnasium and Stable-Baselines3 compliance, episodes, seeding, errors."""

from __future__ import annotations

import pickle
import warnings
from functools import partial
from pathlib import Path

import gymnasium
import matplotlib
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from gym_autoencoder import CheckpointError, FrameAutoencoder
from gym_autoencoder.envs import (
    EnvOptionError,
    EnvUsageError,
    HeadlessRenderWarning,
    InvalidActionError,
)
from gym_autoencoder.envs.encoded_procgen import procgen_rand_seed
from gym_autoencoder.errors import DeviceError, UnknownModelError
from gym_autoencoder.registration import ENV_ARCHITECTURES, GENERIC_ENV_ID
from gym_autoencoder.procgen_games import import_procgen
from gym_autoencoder.model_stubs import build_model
from tests.helpers import make_env, training_encoding

ENV_IDS = list(ENV_ARCHITECTURES)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
NOOP = 4  # Procgen's action with no key pressed
INFINITE_BOUNDS_WARNING = "observation space m"  # encodings are unbounded: Gymnasium notes the infinite Box


@pytest.fixture
def headless_matplotlib():
    """matplotlib without a display, as on CI (on a desktop too, so that the tests behave alike)."""
    backend = matplotlib.get_backend()
    matplotlib.use("agg")
    yield
    matplotlib.use(backend)


# (id, whose checkpoint): every registered id on a fresh model's checkpoint, and VAE_Alex's shipped weights
CHECKED_ENVS = [
    *[(env_id, env_id) for env_id in ENV_IDS],
    (GENERIC_ENV_ID, "auto-maxpool-v0"),
    ("vae-alex-v0", "shipped"),
]


def make_checked(env_id: str, checkpoint_of: str, checkpoints: dict[str, Path], **kwargs) -> gymnasium.Env:
    checkpoint = {} if checkpoint_of == "shipped" else {"checkpoint": checkpoints[checkpoint_of]}
    return gymnasium.make(f"gym_autoencoder:{env_id}", device="cpu", **checkpoint, **kwargs)


@pytest.mark.usefixtures("headless_matplotlib")
@pytest.mark.parametrize(("env_id", "checkpoint_of"), CHECKED_ENVS)
def test_gymnasium_check_env_passes(env_id, checkpoint_of, env_checkpoints):
    env = make_checked(env_id, checkpoint_of, env_checkpoints, render_mode="rgb_array")
    architecture = ENV_ARCHITECTURES[env_id if checkpoint_of == "shipped" else checkpoint_of]
    assert env.observation_space.shape == build_model(
        architecture, **({"perceptual_features": "random"} if architecture == "VAE_Alex" else {})
    ).encoding_shape
    assert env.observation_space.dtype == np.float32 and env.action_space == gymnasium.spaces.Discrete(15)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)  # every check, rendering in each declared mode ("human" headless) included
    # the one "human" environment check_env makes warns once that it shows nothing here
    assert [w.category for w in caught].count(HeadlessRenderWarning) == 1
    assert [
        str(w.message) for w in caught
        if INFINITE_BOUNDS_WARNING not in str(w.message) and w.category is not HeadlessRenderWarning
    ] == []


@pytest.mark.parametrize(("env_id", "checkpoint_of"), CHECKED_ENVS)
def test_stable_baselines3_check_env_passes(env_id, checkpoint_of, env_checkpoints):
    env = make_checked(env_id, checkpoint_of, env_checkpoints)
    if len(env.observation_space.shape) > 1:
        # SB3 takes a 3-D float observation for an image and advises flattening it (its MlpPolicy does)
        with pytest.warns(UserWarning, match="is an image but its `dtype` is \\(float32\\)"):
            sb3_check_env(env, warn=True)
        env = gymnasium.wrappers.FlattenObservation(env)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=f".*{INFINITE_BOUNDS_WARNING}")
        sb3_check_env(env, warn=True)


@pytest.mark.slow
def test_ppo_mlp_policy_trains_on_vae_alex(env_checkpoints):
    env = make_env("vae-alex-v0", env_checkpoints)
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=2, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=2048)
    assert model.num_timesteps == 2048
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))


@pytest.mark.parametrize("env_id", ["auto-unpool-v0", "vae-paper-v0"])
def test_latent_equals_the_training_pipelines_encoding(env_id, env_checkpoints):
    env = make_env(env_id, env_checkpoints, include_frame=True)
    observations, frames = [], []
    obs, info = env.reset(seed=2)
    for action in [1, 7, 5, 3, 8]:
        observations.append(obs)
        frames.append(info["frame"])
        obs, _, _, _, info = env.step(action)
    expected = training_encoding(env_checkpoints[env_id], np.stack(frames))
    np.testing.assert_allclose(np.stack(observations), expected, rtol=1e-5, atol=1e-6)


def test_observations_come_from_the_frame_autoencoder(env_checkpoints):
    env = make_env("auto-maxpool-v0", env_checkpoints, include_frame=True)
    autoencoder = env.unwrapped.autoencoder
    assert isinstance(autoencoder, FrameAutoencoder) and autoencoder.architecture == "Conv_Maxpool"
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, autoencoder.encode(info["frame"][None])[0])
    assert info["frame"].dtype == np.uint8 and info["frame"].shape == (64, 64, 3)


def test_same_seed_gives_the_same_first_observation(env_checkpoints):
    env = make_env("auto-maxpool-v0", env_checkpoints)
    first, info_first = env.reset(seed=7)
    env.step(3)
    again, info_again = env.reset(seed=7)
    other, info_other = env.reset(seed=8)
    np.testing.assert_array_equal(first, again)
    assert info_first["level_seed"] == info_again["level_seed"] != info_other["level_seed"]
    assert not np.array_equal(first, other)


def test_reset_mid_episode_starts_the_next_level(env_checkpoints):
    env = make_env("auto-maxpool-v0", env_checkpoints)
    _, info = env.reset(seed=1)
    for action in range(5):
        env.step(action)
    _, next_info = env.reset()
    assert next_info["level_seed"] != info["level_seed"]


def test_procgen_options_choose_game_and_levels(env_checkpoints):
    env = gymnasium.make(
        f"gym_autoencoder:{GENERIC_ENV_ID}", checkpoint=env_checkpoints["vae-paper-v0"], game="bigfish",
        distribution_mode="easy", start_level=5, num_levels=3, device="cpu",
    )
    assert {env.reset(seed=seed)[1]["level_seed"] for seed in range(12)} == {5, 6, 7}
    assert env.unwrapped._procgen.time_limit == 6000  # bigfish's own limit, read from the game state


def test_episode_end_matches_raw_procgen(env_checkpoints):
    """Step for step against Procgen itself: terminal step, level_complete, the next reset's frame."""
    seed = 3
    env = gymnasium.make(
        f"gym_autoencoder:{GENERIC_ENV_ID}", checkpoint=env_checkpoints["auto-maxpool-v0"],
        game="coinrun", distribution_mode="easy", include_frame=True, device="cpu",
    )
    raw = import_procgen().ProcgenGym3Env(
        num=1, env_name="coinrun", distribution_mode="easy", use_backgrounds=False,
        rand_seed=procgen_rand_seed(np.random.default_rng(seed)),
    )
    _, info = env.reset(seed=seed)
    np.testing.assert_array_equal(info["frame"], raw.observe()[1]["rgb"][0])
    rng = np.random.default_rng(0)
    for step in range(1, 1001):
        action = int(rng.integers(15))
        obs, reward, terminated, truncated, next_info = env.step(action)
        raw.act(np.array([action], dtype=np.int32))
        raw_reward, raw_obs, raw_first = raw.observe()
        assert reward == raw_reward[0]
        if terminated or truncated:
            break
        np.testing.assert_array_equal(next_info["frame"], raw_obs["rgb"][0])
        info = next_info
    assert raw_first[0] and (terminated != truncated) and terminated == (step < 1000)
    # the terminal step shows the ended episode's last frame (Procgen never renders a later one)
    np.testing.assert_array_equal(next_info["frame"], info["frame"])
    assert next_info["level_complete"] == (reward > 0) and next_info["level_seed"] == info["level_seed"]
    with pytest.raises(EnvUsageError, match="call env.reset"):
        env.step(0)
    _, reset_info = env.reset()
    np.testing.assert_array_equal(reset_info["frame"], raw_obs["rgb"][0])
    assert reset_info["level_seed"] == raw.get_info()[0]["level_seed"]


def test_time_limit_truncates_and_does_not_terminate(env_checkpoints):
    env = make_env("auto-maxpool-v0", env_checkpoints)
    env.reset(seed=0)
    ends = []
    for _ in range(1000):
        obs, _, terminated, truncated, info = env.step(NOOP)  # standing still never reaches the gem
        ends.append((terminated, truncated))
    assert ends[-1] == (False, True) and not any(map(any, ends[:-1]))
    assert info["level_complete"] is False
    _, reset_info = env.reset()
    assert reset_info["level_seed"] != info["level_seed"]


def test_pickled_env_continues_exactly(env_checkpoints):
    env = make_env("vae-paper-v0", env_checkpoints).unwrapped
    fresh = pickle.loads(pickle.dumps(env))
    np.testing.assert_array_equal(fresh.reset(seed=4)[0], env.reset(seed=4)[0])
    for action in [5, 5, 7, 1]:
        env.step(action)
    clone = pickle.loads(pickle.dumps(env))
    for action in [2, 8, 6, 6, 3]:
        expected, actual = env.step(action), clone.step(action)
        np.testing.assert_array_equal(actual[0], expected[0])
        assert actual[1:] == expected[1:]


@pytest.mark.slow
def test_scalar_env_runs_inside_async_vector_env(env_checkpoints):
    make_env = partial(
        gymnasium.make, "gym_autoencoder:auto-maxpool-v0",
        checkpoint=str(env_checkpoints["auto-maxpool-v0"]), device="cpu",
    )
    envs = gymnasium.vector.AsyncVectorEnv([make_env, make_env], context="spawn")
    try:
        obs, _ = envs.reset(seed=5)
        local = make_env()
        np.testing.assert_array_equal(obs[0], local.reset(seed=5)[0])
        for action in [3, 5, 7]:
            obs, *_ = envs.step(np.array([action, action]))
            np.testing.assert_array_equal(obs[0], local.step(action)[0])
    finally:
        envs.close()


def test_rgb_array_shows_frame_and_reconstruction_side_by_side(env_checkpoints):
    env = make_env("auto-unpool-v0", env_checkpoints, render_mode="rgb_array", include_frame=True)
    _, info = env.reset(seed=0)
    image = env.render()
    assert image.shape == (256, 512, 3) and image.dtype == np.uint8
    reconstruction = env.unwrapped.autoencoder.reconstruct(info["frame"][None])[0]
    np.testing.assert_array_equal(image[::4, :256:4], info["frame"])
    np.testing.assert_array_equal(image[::4, 256::4], reconstruction)


@pytest.mark.usefixtures("headless_matplotlib")
def test_human_render_without_a_display_warns_once_and_runs(env_checkpoints):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = make_env("auto-maxpool-v0", env_checkpoints, render_mode="human")
        env.reset(seed=0)
        for _ in range(5):
            observation, *_ = env.step(NOOP)
            assert env.render() is None
        env.close()
    headless = [str(w.message) for w in caught if w.category is HeadlessRenderWarning]
    assert len(headless) == 1
    assert "render_mode='rgb_array'" in headless[0] and "MPLBACKEND" in headless[0]
    assert observation.shape == env.observation_space.shape


def test_unsupported_render_mode_is_a_clear_error(env_checkpoints):
    with pytest.raises(EnvOptionError, match="render_mode='ansi' is not supported"):
        make_env("auto-maxpool-v0", env_checkpoints, render_mode="ansi")


def test_unknown_model_is_a_clear_error():
    with pytest.raises(UnknownModelError, match="unknown model 'Conv_Nothing'"):
        gymnasium.make(f"gym_autoencoder:{GENERIC_ENV_ID}", checkpoint="Conv_Nothing")
    with pytest.raises(EnvOptionError, match="needs checkpoint=PATH"):
        gymnasium.make(f"gym_autoencoder:{GENERIC_ENV_ID}")


def test_checkpoint_of_another_architecture_is_refused(env_checkpoints):
    with pytest.raises(CheckpointError, match="holds a Conv_Maxpool model, expected Conv_Unpool"):
        gymnasium.make("gym_autoencoder:auto-unpool-v0", checkpoint=env_checkpoints["auto-maxpool-v0"])


@pytest.mark.parametrize("action", [15, -1, 2.5, "1", np.array([1, 2])])
def test_action_outside_the_space_is_a_clear_error(action, env_checkpoints):
    env = make_env("auto-maxpool-v0", env_checkpoints).unwrapped
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="outside Discrete\\(15\\)"):
        env.step(action)


def test_step_before_reset_is_a_clear_error(env_checkpoints):
    with pytest.raises(EnvUsageError, match="before reset"):
        make_env("auto-maxpool-v0", env_checkpoints).unwrapped.step(0)
    with pytest.raises(gymnasium.error.ResetNeeded):
        make_env("auto-maxpool-v0", env_checkpoints).step(0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"game": "tetris"}, "unknown Procgen game"),
        ({"game": "coinrun", "distribution_mode": "memory"}, "coinrun has no 'memory' distribution mode"),
        ({"distribution_mode": "medium"}, "unknown distribution_mode"),
        ({"num_levels": -1}, "must be >= 0"),
    ],
)
def test_bad_procgen_options_are_clear_errors(options, message, env_checkpoints):
    with pytest.raises(EnvOptionError, match=message):
        make_env("auto-maxpool-v0", env_checkpoints, **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(env_checkpoints):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        gymnasium.make("gym_autoencoder:auto-maxpool-v0", checkpoint=env_checkpoints["auto-maxpool-v0"], device="cuda")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_shipped_checkpoints_load(env_id):
    """Every registered id loads its shipped checkpoint, found through the installed package."""
    env = gymnasium.make(f"gym_autoencoder:{env_id}", device="cpu")
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.autoencoder.architecture == ENV_ARCHITECTURES[env_id]
    assert obs in env.observation_space and np.isfinite(obs).all()
