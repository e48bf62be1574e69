#!/usr/bin/env bash
# Set up tao-skills from nothing: a virtual environment in .venv with the runtime, the
# built-in engine (CPU torch on a machine without a GPU) and, with --dev, the test tools
# and TAO Core 7.3.0 (tests only; the runtime never imports it).
#   scripts/setup.sh          runtime + engine
#   scripts/setup.sh --dev    + pytest, skills-ref, nvidia-tao-core (for schema tests), and as root
#                             slurm-wlm + munge (apt) for the SLURM platform tests
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[[ "${1:-}" == "--dev" ]] && dev=1
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip
# torch first and pinned: on a CPU machine 2.13.0 is the local CPU build; anything else
# installed later must keep it (never torchvision/timm/lightly: a CUDA torchvision breaks transformers imports on a CPU torch).
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then pip install -q torch; else pip install -q torch==2.13.0; fi
fi
torch_before=$(python -c "import torch; print(torch.__version__)")
if [[ $dev == 1 ]]; then
  pip install -q -e ".[engine,dev]"
  pip install -q --no-deps "nvidia-tao-core==7.3.0"
  pip install -q "omegaconf>=2.3"
  # The SLURM platform's tests start a real one-node cluster (scripts/slurm_cluster.sh).
  if ! command -v slurmctld >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
  fi
else
  pip install -q -e ".[engine]"
fi
torch_after=$(python -c "import torch; print(torch.__version__)")
if [[ "$torch_before" != "$torch_after" ]]; then
  echo "setup: pip replaced torch $torch_before with $torch_after; refusing to go on" >&2
  exit 1
fi
if python -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('torchvision') else 1)"; then
  echo "setup: torchvision is installed in .venv; on a CPU torch it breaks transformers. pip uninstall torchvision" >&2
  exit 1
fi
echo "setup: ok (torch $torch_after)" >&2
