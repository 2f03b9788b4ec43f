"""The devices the device-parametrised tests run on: the CPU always, the GPU where torch sees one.

The ``cuda`` parameters skip on machines without a GPU (as on the machine this was written
on: the GPU path has not been run on a GPU yet).
"""

from __future__ import annotations

import pytest
import torch

NO_GPU = "no GPU visible to torch (the cuda path is prepared but has not been run here)"
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
DEVICES = ["cpu", pytest.param("cuda", marks=needs_gpu)]
