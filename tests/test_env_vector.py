"""The vectorised environment: one Procgen instance, one encoder batch per step, SAME_STEP autoreset."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from tests.helpers import make_env, training_encoding

from gym_autoencoder.registration import GENERIC_ENV_ID
from gym_autoencoder.envs import (
    EncodedProcgenVectorEnv,
    EnvOptionError,
    EnvUsageError,
    InvalidActionError,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_vec(env_id: str, checkpoints, num_envs: int, **kwargs) -> EncodedProcgenVectorEnv:
    return gymnasium.make_vec(
        f"gym_autoencoder:{env_id}", num_envs=num_envs, checkpoint=checkpoints[env_id], device="cpu", **kwargs
    )


def test_make_vec_builds_one_batched_env(env_checkpoints):
    envs = make_vec("auto-unpool-v0", env_checkpoints, num_envs=4)
    assert isinstance(envs, EncodedProcgenVectorEnv)
    assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert envs.observation_space.shape == (4, 32, 6, 6) and envs.single_action_space.n == 15
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space and info["level_seed"].shape == (4,)
    obs, rewards, terminated, truncated, _ = envs.step(envs.action_space.sample())
    assert obs.dtype == np.float32 and rewards.shape == terminated.shape == truncated.shape == (4,)


def test_all_frames_are_encoded_in_one_batch_as_training_does(env_checkpoints):
    envs = make_vec("vae-alex-v0", env_checkpoints, num_envs=8, include_frame=True)
    batches = []
    encode = envs.autoencoder.encode
    envs.autoencoder.encode = lambda frames: batches.append(len(frames)) or encode(frames)
    envs.reset(seed=1)
    obs, *_, info = envs.step(np.arange(8))
    assert batches == [8, 8]
    expected = training_encoding(env_checkpoints["vae-alex-v0"], info["frame"])
    np.testing.assert_allclose(obs, expected, rtol=1e-5, atol=1e-6)


def test_same_seed_gives_the_same_first_observations(env_checkpoints):
    envs = make_vec("auto-maxpool-v0", env_checkpoints, num_envs=3)
    first, info = envs.reset(seed=9)
    envs.step(np.array([1, 2, 3]))
    again, info_again = envs.reset(seed=9)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(info["level_seed"], info_again["level_seed"])
    assert len(set(info["level_seed"])) == 3


def test_sub_env_zero_plays_what_the_scalar_env_plays(env_checkpoints):
    envs = make_vec("auto-maxpool-v0", env_checkpoints, num_envs=3, include_frame=True)
    env = make_env("auto-maxpool-v0", env_checkpoints, include_frame=True)
    batch, single = envs.reset(seed=11), env.reset(seed=11)
    for action in [1, 7, 7, 5, 0, 3]:
        np.testing.assert_array_equal(batch[-1]["frame"][0], single[-1]["frame"])
        np.testing.assert_allclose(batch[0][0], single[0], rtol=1e-5, atol=1e-6)  # batch 3 vs batch 1
        batch, single = envs.step(np.array([action, 4, 4])), env.step(action)
        assert batch[1][0] == single[1]


def test_episode_ends_follow_same_step_autoreset(env_checkpoints):
    envs = gymnasium.make_vec(
        f"gym_autoencoder:{GENERIC_ENV_ID}", num_envs=8, checkpoint=env_checkpoints["auto-maxpool-v0"],
        game="coinrun", distribution_mode="easy", include_frame=True, device="cpu",
    )
    obs, info = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(1000):
        previous_obs, previous_info = obs, info
        obs, rewards, terminated, truncated, info = envs.step(rng.integers(0, 15, 8))
        if (terminated | truncated).any():
            break
    done = terminated | truncated
    assert not (terminated & truncated).any()
    np.testing.assert_array_equal(info["_final_obs"], done)
    final = info["final_info"]
    for index in range(8):
        if done[index]:
            np.testing.assert_array_equal(info["final_obs"][index], previous_obs[index])
            np.testing.assert_array_equal(final["frame"][index], previous_info["frame"][index])
            assert final["level_seed"][index] == previous_info["level_seed"][index] != info["level_seed"][index]
            assert final["level_complete"][index] == (rewards[index] > 0)
        else:
            assert info["final_obs"][index] is None
            assert info["level_seed"][index] == previous_info["level_seed"][index]


def test_render_returns_one_side_by_side_image_per_game(env_checkpoints):
    envs = make_vec("auto-no-bottleneck-v0", env_checkpoints, num_envs=2, render_mode="rgb_array")
    envs.reset(seed=0)
    images = envs.render()
    assert len(images) == 2 and all(image.shape == (256, 512, 3) and image.dtype == np.uint8 for image in images)


def test_bad_use_is_a_clear_error(env_checkpoints):
    envs = make_vec("auto-maxpool-v0", env_checkpoints, num_envs=2)
    with pytest.raises(EnvUsageError, match="before reset"):
        envs.step(np.array([0, 0]))
    envs.reset(seed=0)
    for actions in (np.array([0]), np.array([0, 15]), np.array([-1, 0]), np.array([0.0, 1.0])):
        with pytest.raises(InvalidActionError, match="actions must be 2 ints from 0 to 14"):
            envs.step(actions)
    with pytest.raises(EnvOptionError, match="seed must be an int"):
        envs.reset(seed=[1, 2])
    for count in (0, 2.5, "2", True):
        with pytest.raises(EnvOptionError, match="num_envs must be at least 1 and an integer"):
            make_vec("auto-maxpool-v0", env_checkpoints, num_envs=count)
