"""Config loading, presets, overrides and validation."""

from __future__ import annotations

import pytest

from gradasym.config import Config, ConfigError, available_presets, load_config


def test_defaults_are_the_original_setup() -> None:
    cfg = load_config()
    assert cfg.env.n_agents == 50 and cfg.env.steps_per_episode == 10 and cfg.env.mode == "H2"
    assert cfg.agent.batch_size == 64 and cfg.agent.memory_capacity == 10_000
    assert cfg.agent.gamma == 0.99 and cfg.agent.tau == 1.0 and cfg.agent.eps_decay == 2000
    assert cfg.agent.actor_update == "sequential" and cfg.agent.actor_hidden == (64, 32)
    assert cfg.run.tracking == "clean" and cfg.run.freeze_tolerance == 0.0
    assert cfg.presets == []


def test_toml_and_yaml_files_and_overrides(tmp_path) -> None:
    t = tmp_path / "c.toml"
    t.write_text('[agent]\nactor_lr = 0.1\nactor_hidden = [16, 8]\n[run]\nepisodes = 7\n')
    cfg = load_config(t, overrides={"agent.critic_lr": "0.01", "run.early_stop": "false"})
    assert cfg.agent.actor_lr == 0.1 and cfg.agent.actor_hidden == (16, 8)
    assert cfg.run.episodes == 7 and cfg.agent.critic_lr == 0.01 and cfg.run.early_stop is False
    y = tmp_path / "c.yaml"
    y.write_text("env:\n  n_agents: 12\n  mode: TOBM\npresets: [layernorm]\n")
    cfg = load_config(y)
    assert cfg.env.n_agents == 12 and cfg.env.constraint == cfg.env.n_units
    assert cfg.presets == ["layernorm"] and cfg.agent.actor_norm == "layernorm"


def test_round_trip_through_dict() -> None:
    cfg = load_config(presets=["large-actor", "reward-norm"], overrides={"run.seed": 3})
    again = Config.from_dict(cfg.to_dict()).validate()
    assert again == cfg


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"agent.actor_lr": -0.1}, "agent.actor_lr"),
        ({"agent.critic_lr": 0}, "agent.critic_lr"),
        ({"env.n_agents": 5}, "smaller than the offloading constraint"),
        ({"env.min_size": 60}, "env.min_size"),
        ({"env.min_size": -1}, "env.min_size"),
        ({"env.mode": "H3"}, "env.mode"),
        ({"agent.actor_update": "parallel"}, "agent.actor_update"),
        ({"run.episodes": "ten"}, "run.episodes"),
        ({"agent.nonexistent": 1}, "agent.nonexistent"),
        ({"agent.tau": 0}, "agent.tau"),
        ({"run.device": "cuda"}, "run.device"),
        ({"run.seed": -1}, "run.seed must be an integer in \\[0, 2\\*\\*63\\), got -1"),
        ({"run.seed": 2**63}, "run.seed"),
        ({"agent.batch_size": 65, "agent.memory_capacity": 64}, "agent.batch_size=65 is larger than agent.memory_capacity=64"),
    ],
)
def test_bad_values_are_clear_errors(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_malformed_and_missing_files(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent\nactor_lr = ")
    with pytest.raises(ConfigError, match="malformed"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    unknown = tmp_path / "u.toml"
    unknown.write_text("[trainer]\nx = 1\n")
    with pytest.raises(ConfigError, match="unknown section 'trainer'"):
        load_config(unknown)


def test_every_paper_preset_exists_and_loads() -> None:
    required = {"baseline", "large-actor", "linear-hidden", "layernorm", "fullnorm", "gradclip", "reward-norm",
                "td3-delay", "squashed-gaussian", "beta-policy", "softsign", "scaled-sigmoid", "preact-penalty"}
    assert required <= set(available_presets())
    for name in required:
        cfg = load_config(presets=[name])
        assert cfg.presets == ([] if name == "baseline" else [name])
        assert cfg != Config() or name == "baseline"


def test_presets_combine_and_conflicts_are_errors() -> None:
    cfg = load_config(presets=["layernorm", "reward-norm"])
    assert cfg.agent.actor_norm == "layernorm" and cfg.agent.reward_norm
    with pytest.raises(ConfigError, match="conflict"):
        load_config(presets=["layernorm", "fullnorm"])
    with pytest.raises(ConfigError, match="squashing"):
        load_config(presets=["squashed-gaussian", "softsign"])
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config(presets=["nope"])


def test_a_config_file_may_not_contradict_a_preset(tmp_path) -> None:
    """A file value that differs from a preset's would be lost silently one way or the other (a
    baseline run named 'layernorm', or the file's setting ignored): refused, naming both; the same
    value, other fields and --set overrides are fine."""
    f = tmp_path / "f.toml"
    f.write_text('[agent]\nactor_norm = "none"\nactor_lr = 0.01\n')
    with pytest.raises(ConfigError, match=r"f.toml sets agent.actor_norm = 'none', but preset 'layernorm' sets "
                                          r"agent.actor_norm = 'layernorm'"):
        load_config(f, presets=["layernorm"])
    inline = tmp_path / "inline.toml"
    inline.write_text('presets = ["layernorm"]\n[agent]\nactor_norm = "none"\n')
    with pytest.raises(ConfigError, match="preset 'layernorm'"):
        load_config(inline)                                   # the file's own presets too
    same = tmp_path / "same.toml"
    same.write_text('presets = ["layernorm"]\n[agent]\nactor_norm = "layernorm"\nactor_lr = 0.01\n')
    cfg = load_config(same)
    assert (cfg.presets, cfg.agent.actor_norm, cfg.agent.actor_lr) == (["layernorm"], "layernorm", 0.01)
    cfg = load_config(tmp_path / "same.toml", overrides={"agent.actor_norm": "none"})
    assert cfg.agent.actor_norm == "none"                     # an explicit override still wins


def test_a_grid_file_base_may_not_contradict_a_preset(tmp_path) -> None:
    from gradasym.sweep.spec import SweepSpec

    g = tmp_path / "g.toml"
    g.write_text('presets = ["layernorm"]\n[agent]\nactor_norm = "none"\n[grid]\n"agent.actor_lr" = [0.1]\n')
    with pytest.raises(ConfigError, match="g.toml sets agent.actor_norm = 'none', but preset 'layernorm'"):
        SweepSpec.from_file(g)
    g.write_text('[agent]\nactor_norm = "none"\n[grid]\n"agent.actor_lr" = [0.1]\n')
    with pytest.raises(ConfigError, match="preset 'layernorm'"):
        SweepSpec.from_file(g, presets=["layernorm"])


def test_every_field_is_in_the_configuration_reference() -> None:
    """docs/configuration.md documents every field of every section (and nothing stale)."""
    import dataclasses
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    cfg = Config()
    fields = {f"{section}.{f.name}" for section in ("env", "agent", "run")
              for f in dataclasses.fields(getattr(cfg, section))}
    documented = set(re.findall(r"`((?:env|agent|run)\.[a-z_0-9]+)`", doc))
    assert fields - documented == set(), "undocumented config fields"
    assert documented - fields == set(), "docs/configuration.md names fields that do not exist"


def test_memory_estimate_counts_the_big_parts_and_refuses_what_cannot_fit() -> None:
    from gradasym.config import check_memory, estimate_memory

    base = load_config()
    parts = estimate_memory(base)
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")
    assert parts["total"] < 2**30  # the paper's size is small
    # the critic's first layer is (N * 10) x 512 (+ bias): x6 copies of 4 bytes
    big = load_config(overrides={"env.n_agents": 100_000})
    first_layer = (100_000 * 10 * 512 + 512) * 4 * 6
    assert first_layer <= estimate_memory(big)["critic"] < 1.01 * first_layer + 2**20
    # the replay: 10,000 transitions of 100,000 agents x (7 + 7 + 3 + 1) float32
    assert estimate_memory(big)["replay"] >= 10_000 * 100_000 * 18 * 4
    doubled = load_config(overrides={"agent.memory_capacity": 20_000})
    assert estimate_memory(doubled)["replay"] == 2 * parts["replay"]
    check_memory(base, available=parts["total"] + 1)
    with pytest.raises(ConfigError, match=r"needs about 171\.\d GiB .*only 16\.0 GiB of memory is available"):
        check_memory(big, available=16 * 2**30)
    with pytest.raises(ConfigError, match="x 3 runs at once.*fewer workers"):
        check_memory(base, concurrent=3, available=2 * parts["total"])
