"""The Procgen layer the environments and the generators share: game table, option checks, state header."""

from __future__ import annotations

import numpy as np
import pytest

from gym_autoencoder.data_generation.arguments import GenerationError
from gym_autoencoder.data_generation.procgen_rollout import Rollout
from gym_autoencoder.data_generation.sample_generator_heist_basic import generate_basic_dataset
from gym_autoencoder.envs.errors import EnvOptionError
from gym_autoencoder.procgen_batch import ProcgenBatch
from gym_autoencoder.procgen_games import (
    DISTRIBUTION_MODES,
    GAME_MODES,
    NUM_ACTIONS,
    ProcgenOptions,
    import_procgen,
)
from gym_autoencoder.procgen_state import ProcgenStateError, read_state_header


def test_game_table_matches_procgens_own_lists():
    procgen = import_procgen()
    assert list(GAME_MODES) == procgen.env.ENV_NAMES
    assert list(DISTRIBUTION_MODES) == list(procgen.env.DISTRIBUTION_MODE_DICT)
    exploration = {game for game, modes in GAME_MODES.items() if "exploration" in modes}
    assert exploration == set(procgen.env.EXPLORATION_LEVEL_SEEDS)
    assert all(modes[:2] == ("easy", "hard") for modes in GAME_MODES.values())


@pytest.mark.parametrize(
    "game, mode, message",
    [
        ("tetris", "easy", "unknown Procgen game 'tetris'; choose one of bigfish, "),
        ("coinrun", "memory", "coinrun has no 'memory' distribution mode; choose one of easy, hard, exploration, "
                              "or play 'memory' with one of caveflyer, dodgeball, heist, jumper, maze, miner"),
        ("heist", "medium", "unknown distribution_mode 'medium'"),
    ],
)
def test_environments_and_generators_refuse_the_same_game_and_mode(game, mode, message, tmp_path):
    with pytest.raises(EnvOptionError) as env_error:
        ProcgenOptions(game, mode).check(EnvOptionError)
    with pytest.raises(GenerationError) as generator_error:
        generate_basic_dataset(tmp_path, 10, game=game, distribution_mode=mode, progress=False)
    with pytest.raises(GenerationError):
        Rollout(game, 1, 0, 0, mode)
    assert str(env_error.value) == str(generator_error.value)
    assert str(env_error.value).startswith(message)


def test_exploration_is_an_environment_mode_but_not_a_generator_mode(tmp_path):
    ProcgenOptions("heist", "exploration").check(EnvOptionError)
    with pytest.raises(EnvOptionError, match="exploration mode fixes its own level"):
        ProcgenOptions("heist", "exploration", num_levels=5).check(EnvOptionError)
    with pytest.raises(GenerationError, match="exploration mode plays a single level"):
        generate_basic_dataset(tmp_path, 10, distribution_mode="exploration", progress=False)


@pytest.mark.parametrize(
    "game, mode, time_limit, mode_code", [("heist", "memory", 1000, 10), ("bigfish", "easy", 6000, 0)]
)
def test_state_header_reads_what_procgen_reports(game, mode, time_limit, mode_code):
    games = ProcgenBatch(ProcgenOptions(game, mode), 4, rand_seed=7)
    rng = np.random.default_rng(0)
    for _ in range(3):
        games.act(rng.integers(0, NUM_ACTIONS, 4))
    observation = games.observe()
    headers = [read_state_header(state) for state in games.states()]
    games.close()
    assert [header.game for header in headers] == [game] * 4
    assert [header.level_seed for header in headers] == observation.level_seeds.tolist()
    assert {(header.time_limit, header.distribution_mode) for header in headers} == {(time_limit, mode_code)}
    assert all(header.cur_time == 3 for header in headers)


def test_a_broken_state_gets_one_clear_error():
    state = ProcgenBatch(ProcgenOptions("coinrun", "easy"), 1, rand_seed=0).states()[0]
    for bad in (state[:-4], b"\1\0\0\0" + state[4:], b""):
        with pytest.raises(ProcgenStateError, match="install procgen-mirror==0.10.7"):
            read_state_header(bad)
