"""--algo on the command line: config files, grid files, flags (no training)."""

from __future__ import annotations

import pytest

from gradasym import cli
from gradasym.config import Config, ConfigError

pytest.importorskip("stable_baselines3")
pytest.importorskip("gymnasium")


def parse(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def test_default_is_ccm_madrl_and_unchanged():
    cfg = cli.config_from_args(parse("run", "--episodes", "7", "--n-agents", "20"))
    assert isinstance(cfg, Config) and cfg.run.episodes == 7 and cfg.env.n_agents == 20


def test_sb3_flags_map_to_its_fields():
    cfg = cli.config_from_args(parse("run", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "999",
                                     "--actor-lr", "0.1", "--critic-lr", "0.01", "--seed", "5",
                                     "--batch-size", "64", "--log-interval", "7",
                                     "--set", "agent.ent_coef_lr=0.002"))
    assert (cfg.algo, cfg.env.id, cfg.run.steps, cfg.run.seed, cfg.run.log_interval) == ("sac", "Pendulum-v1",
                                                                                         999, 5, 7)
    assert (cfg.agent.actor_lr, cfg.agent.critic_lr, cfg.agent.batch_size, cfg.agent.ent_coef_lr) == (
        0.1, 0.01, 64, 0.002)
    assert cli._default_run_name(cfg) == "run_sac_Pendulum-v1_alr0.1_clr0.01_s5"


def test_config_file_names_its_algorithm(tmp_path):
    f = tmp_path / "sac.toml"
    f.write_text('algo = "sac"\n[agent]\nbatch_size = 64\n[run]\nsteps = 500\n')
    cfg = cli.config_from_args(parse("run", "--config", str(f)))
    assert cfg.algo == "sac" and cfg.agent.batch_size == 64 and cfg.run.steps == 500
    with pytest.raises(ConfigError, match="--algo td3 contradicts algo = 'sac'"):
        cli.config_from_args(parse("run", "--algo", "td3", "--config", str(f)))


def test_sweep_grid_file_and_axes_for_sb3(tmp_path):
    from gradasym.sweep.commands import spec_from_args

    grid = tmp_path / "g.toml"
    grid.write_text('algo = "ddpg"\n[run]\nsteps = 300\n[grid]\n"agent.actor_lr" = [0.1, 0.01]\n'
                    '[sweep]\nseeds = [1, 2]\n')
    spec = spec_from_args(parse("sweep", "--grid", str(grid), "--out", str(tmp_path / "s")), cli.config_from_args,
                          cli._add_config_args)
    runs = spec.expand()
    assert spec.base.algo == "ddpg" and len(runs) == 4 and {r.config.run.steps for r in runs} == {300}
    assert [r.run_id for r in runs[:2]] == ["alr0.1_clr0.001_s1", "alr0.01_clr0.001_s1"]
    # default axes: the paper's 4x4 learning-rate grid, for SB3 too
    spec = spec_from_args(parse("sweep", "--algo", "td3", "--out", str(tmp_path / "t")), cli.config_from_args,
                          cli._add_config_args)
    assert len(spec.expand()) == 16 and spec.to_dict()["base_config"]["algo"] == "td3"
    with pytest.raises(ConfigError, match="sweep axis 'agent.memory_capacity': unknown field 'agent.memory_capacity' .known: action_noise"):
        spec_from_args(parse("sweep", "--algo", "td3", "--axis", "agent.memory_capacity=1,2", "--out",
                             str(tmp_path / "u")), cli.config_from_args, cli._add_config_args)
