"""gradasym: why actors freeze while critics keep learning (CCM-MADRL on MEC)."""

__version__ = "0.1.0"
