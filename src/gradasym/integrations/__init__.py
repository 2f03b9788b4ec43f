"""Integrations of :mod:`gradasym.monitor` with third-party RL libraries.

* :mod:`gradasym.integrations.sb3`: ``SaturationMonitorCallback`` for
  Stable-Baselines3 TD3 / DDPG / SAC (needs the ``sb3`` extra).

Each integration imports its library lazily: importing the module works without it,
using it raises an ``ImportError`` that says what to install.
"""
