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
    # the critic's first layer is (N * 10) x 512 (+ bias): x6 copies of 4 bytes, +1 for the
    # plasticity instruments' initial parameters (run.plasticity, on by default)
    big = load_config(overrides={"env.n_agents": 100_000})
    first_layer = (100_000 * 10 * 512 + 512) * 4 * 7
    assert first_layer <= estimate_memory(big)["critic"] < 1.01 * first_layer + 2**20
    # the replay: 10,000 transitions of 100,000 agents x (7 + 7 + 3 + 1) float32
    assert estimate_memory(big)["replay"] >= 10_000 * 100_000 * 18 * 4
    doubled = load_config(overrides={"agent.memory_capacity": 20_000})
    assert estimate_memory(doubled)["replay"] == 2 * parts["replay"]
    check_memory(base, available=parts["total"] + 1)
    with pytest.raises(ConfigError, match=r"needs about 174\.\d GiB .*only 16\.0 GiB of memory is available"):
        check_memory(big, available=16 * 2**30)
    with pytest.raises(ConfigError, match="x 3 runs at once.*fewer workers"):
        check_memory(base, concurrent=3, available=2 * parts["total"])


#: Every float field of EnvConfig, AgentConfig and RunConfig (the test below keeps the list complete).
FLOAT_FIELDS = [
    *(f"env.{name}" for name in ("lambda_e", "lambda_t", "min_size", "max_size", "min_cycle", "max_cycle",
                                 "min_ddl", "max_ddl", "min_res", "max_res", "min_power", "max_power",
                                 "capability_e", "k_energy_local", "min_ene", "max_ene", "harvest_rate",
                                 "min_gain", "max_gain", "w_bandwidth", "s_e")),
    *(f"agent.{name}" for name in ("actor_lr", "critic_lr", "gamma", "tau", "eps_start", "eps_end", "eps_decay",
                                   "per_alpha", "per_beta0", "per_beta_increment", "per_eps", "output_init",
                                   "entropy_coef", "grad_clip", "preact_penalty", "redo_tau",
                                   "shrink_perturb_lambda", "shrink_perturb_sigma", "weight_decay")),
    *(f"run.{name}" for name in ("freeze_tolerance", "grad_death_threshold", "saturation_threshold",
                                 "dormant_taus", "rank_delta")),
]


def test_the_float_field_list_is_complete() -> None:
    import dataclasses

    cfg = Config()
    floats = {f"{s}.{f.name}" for s in ("env", "agent", "run") for f in dataclasses.fields(getattr(cfg, s))
              if "float" in str(f.type)}
    assert floats == set(FLOAT_FIELDS)


@pytest.mark.parametrize("dotted", FLOAT_FIELDS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_field_refuses_nan_and_inf(dotted: str, value: str) -> None:
    with pytest.raises(ConfigError, match=dotted.replace(".", r"\.")):
        load_config(overrides={dotted: value})


@pytest.mark.parametrize("overrides, message", [
    ({"agent.eps_decay": -1}, r"agent\.eps_decay must be a finite number > 0 .*got -1\.0"),
    ({"agent.per_alpha": -0.1}, r"agent\.per_alpha must be a finite number >= 0"),
    ({"agent.per_beta0": 1.5}, r"agent\.per_beta0 must be in \[0, 1\]"),
    ({"agent.per_beta_increment": -5}, r"agent\.per_beta_increment must be a finite number >= 0 .*got -5\.0"),
    ({"agent.per_eps": 0}, r"agent\.per_eps must be a finite number > 0"),
    ({"agent.output_init": -1}, r"agent\.output_init must be a finite number >= 0 .*got -1\.0"),
    ({"agent.entropy_coef": -1}, r"agent\.entropy_coef must be a finite number >= 0"),
    ({"agent.preact_penalty": -1}, r"agent\.preact_penalty must be a finite number >= 0"),
    ({"agent.grad_clip": 0}, r"agent\.grad_clip must be a finite number > 0"),
    ({"agent.gamma": 1.5}, r"agent\.gamma must be in \[0, 1\], got 1\.5"),
    ({"agent.tau": 0}, r"agent\.tau must be in \(0, 1\], got 0\.0"),
    ({"env.w_bandwidth": 0}, r"env\.w_bandwidth must be a finite number > 0"),
    ({"env.harvest_rate": -1}, r"env\.harvest_rate must be a finite number >= 0"),
    ({"run.freeze_tolerance": -1}, r"run\.freeze_tolerance must be a finite number >= 0"),
    ({"run.saturation_threshold": 1}, r"run\.saturation_threshold must be in \(0, 1\), got 1\.0"),
])
def test_out_of_range_floats_name_the_field_and_the_range(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_range_edges_that_are_meaningful_are_accepted() -> None:
    cfg = load_config(overrides={"agent.output_init": 0, "agent.per_alpha": 0, "agent.per_beta_increment": 0,
                                 "agent.gamma": 1, "agent.tau": 1, "env.lambda_e": 0, "run.freeze_tolerance": 1e-8,
                                 "env.min_power": -10, "env.min_gain": -3})
    assert cfg.agent.output_init == 0.0 and cfg.env.min_power == -10.0


@pytest.mark.parametrize("text, expected", [
    ("9007199254740993", 9007199254740993),  # 2**53 + 1: not representable as a float
    ("9223372036854775807", 2**63 - 1),
    (" 42 ", 42), ("1_000", 1000), ("1e3", 1000), ("2000.0", 2000), ("9.007199254740993e15", 9007199254740993),
    (9007199254740993, 9007199254740993), (7.0, 7),
])
def test_integers_are_parsed_exactly(text, expected) -> None:
    from gradasym.config import parse_int

    assert parse_int(text, "run.seed") == expected
    assert type(parse_int(text, "run.seed")) is int


@pytest.mark.parametrize("text, message", [
    ("1.5", "expected an integer, got '1.5'"), ("1e-3", "expected an integer"), ("nan", "expected an integer"),
    ("inf", "expected an integer"), ("ten", "expected an integer"), (True, "expected an integer"),
    (1.5, "expected an integer"), ("1e400", "'1e400' is too large"),
])
def test_non_integers_are_refused(text, message) -> None:
    from gradasym.config import parse_int

    with pytest.raises(ConfigError, match=f"run.seed: {message}"):
        parse_int(text, "run.seed")


def test_seed_overrides_and_files_keep_every_digit(tmp_path) -> None:
    assert load_config(overrides={"run.seed": "9007199254740993"}).run.seed == 9007199254740993
    assert load_config(overrides={"run.seed": "9223372036854775807"}).run.seed == 2**63 - 1
    f = tmp_path / "c.toml"
    f.write_text("[run]\nseed = 9007199254740993\n")
    assert load_config(f).run.seed == 9007199254740993
    with pytest.raises(ConfigError, match=r"run\.seed must be an integer in \[0, 2\*\*63\), got 9223372036854775808"):
        load_config(overrides={"run.seed": "9223372036854775808"})


def test_tuple_fields_still_split_cli_strings() -> None:
    assert load_config(overrides={"agent.actor_hidden": "16x8"}).agent.actor_hidden == (16, 8)
    assert load_config(overrides={"agent.critic_hidden": "32,16"}).agent.critic_hidden == (32, 16)


@pytest.mark.parametrize("text", ['presets = "layernorm"\n', "presets = 5\n", "presets = [1]\n"])
def test_presets_in_a_file_must_be_a_list_of_names(tmp_path, text) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=r"c\.toml: 'presets' must be a list of preset names") as info:
        load_config(f)
    assert "unknown preset" not in str(info.value)


def test_binary_file_and_directory_are_clear_errors(tmp_path) -> None:
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=r"bin\.toml: not a text config file \(byte 0 is not UTF-8\)"):
        load_config(binary)
    folder = tmp_path / "somedir.toml"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"somedir\.toml is a directory, not a config file"):
        load_config(folder)


def test_the_presets_argument_must_be_a_list_not_a_name() -> None:
    """load_config(presets="layernorm") used to apply presets 'l', 'a', ... (unknown preset 'l')."""
    with pytest.raises(ConfigError, match=r"the presets argument: 'presets' must be a list of preset names"):
        load_config(presets="layernorm")
    assert load_config(presets=("layernorm",)).presets == ["layernorm"]
