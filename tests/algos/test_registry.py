"""The algorithm registry and interface (no training here)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gradasym import algos
from gradasym.config import Config, ConfigError

SRC = Path(__file__).resolve().parents[2] / "src" / "gradasym"


def test_registry_names_and_lookup():
    assert algos.names()[0] == "ccm-madrl" == algos.DEFAULT_ALGO
    assert {"td3", "ddpg", "sac"} <= set(algos.names())
    assert algos.get(None) is algos.get("ccm-madrl") and algos.get("TD3") is algos.get("td3")
    with pytest.raises(ConfigError, match="unknown algorithm 'ppo'.*td3"):
        algos.get("ppo")
    assert algos.of(Config()).name == "ccm-madrl"
    assert algos.of(algos.get("sac").default_config()).name == "sac"
    with pytest.raises(TypeError):
        algos.of(object())


def test_stored_dicts_carry_the_algorithm_and_read_back():
    ccm = Config()
    ccm.agent.actor_lr = 0.01
    stored = algos.to_dict(ccm)
    assert stored["algo"] == "ccm-madrl"
    back = algos.config_from_dict({**stored, "version": "x"})
    assert isinstance(back, Config) and back.to_dict() == ccm.to_dict()
    legacy = ccm.to_dict()  # folders written before "algo" existed are CCM-MADRL
    assert algos.name_of_dict(legacy) == "ccm-madrl" and algos.config_from_dict(legacy).to_dict() == ccm.to_dict()
    sac = algos.get("sac").load_config(overrides={"run.steps": 500, "agent.ent_coef_lr": 0.003})
    again = algos.config_from_dict(algos.to_dict(sac))
    assert again.algo == "sac" and again.to_dict() == sac.to_dict()


def test_units_and_report_extras():
    ccm, td3 = algos.get("ccm-madrl"), algos.get("td3")
    assert (ccm.progress_unit, ccm.stop_unit, ccm.can_resume) == ("episodes", "episodes", True)
    assert (td3.progress_unit, td3.stop_unit, td3.can_resume) == ("environment steps", "gradient steps", True)
    assert "paper" in ccm.report_extras and "paper" not in td3.report_extras
    cfg = td3.load_config(overrides={"run.steps": 123})
    assert td3.progress_total(cfg) == 123 and td3.n_actors(cfg) == 1
    assert ccm.progress_total(Config()) == 2000 and ccm.n_actors(Config()) == 50
    for plugin in (ccm, td3):
        assert set(plugin.summary_keys) >= {"done", "total", "stop", "return_first", "return_last",
                                            "seconds_per_unit"}
    assert td3.has_field("env.id") and not td3.has_field("env.n_agents")
    assert ccm.has_field("env.n_agents") and not ccm.has_field("run.steps")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = ("." * node.level) + (node.module or "")
            names.update(f"{mod}:{a.name}" for a in node.names)
            names.add(mod)
    return names


@pytest.mark.parametrize("package", ["sweep", "report"])
def test_sweep_and_report_import_no_algorithm_specific_code(package):
    """sweep/ and report/ reach algorithms only through gradasym.algos (generic helpers allowed)."""
    forbidden_modules = ("gradasym.algos.ccm_madrl", "gradasym.algos.sb3", "gradasym.env",
                         "..algos.ccm_madrl", "..algos.sb3", "..env")
    forbidden_names = {"Config", "load_config", "apply_preset", "EnvConfig", "AgentConfig", "RunConfig"}
    for path in sorted((SRC / package).glob("*.py")):
        for imp in _imports(path):
            mod, _, name = imp.partition(":")
            assert not any(mod == f or mod.startswith(f + ".") for f in forbidden_modules), (path.name, imp)
            if mod in ("gradasym.config", "..config"):
                assert name not in forbidden_names, (path.name, imp)
