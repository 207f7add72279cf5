#!/usr/bin/env bash
# The GPU checks of the open performance goals, as one device call (a lent H200 gives a session
# 15 minutes in all; this takes about 6 once the machine is up):
#   1. the CUDA-only tests (fusemix's GELU-dropout on CUDA; CLAP extraction with the model on the GPU
#      and decoding workers gives the CPU's latents; skipped on CPU machines), with the CLAP feature
#      tests around them;
#   2. benchmarks/train_throughput.py on CUDA: fp32 step vs matmul rate, bf16 and TF32 vs fp32;
#   3. benchmarks/extract_throughput.py with a full-size random CLAP on the GPU and 4/8/15
#      decoding workers (the machine has 16 cores): whole stage vs forward alone (goal >= 0.9), and
#      whether the workers' CPU-side ceiling reaches the GPU's rate. The one extraction path: workers
#      decode, resample (soxr), cut windows and compute the log-mel; the GPU runs the model. 1024
#      clips: at GPU rates fewer would time mostly the workers' start-up;
#   4. benchmarks/demo_generation.py: the demo's audio -> image on CUDA as a ZeroGPU Space runs it (float16,
#      the full SD VAE, sd-turbo's 2 steps at 512 px), with sd-turbo's architecture in random weights (nothing
#      downloads there): seconds per image, the figure docs/space.md estimates from FLOPs until this runs.
# Outputs go to $OUT (the device tool brings them back) or ./gpu_check_out.
#
# The device image has torch, transformers, numpy, safetensors, tqdm and pytest, but not the
# audio stack nor diffusers (step 4). Carry them as wheels (run here, in the repo root, once per session):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform any -d .whl soundfile==0.14.0 soxr==1.1.0 cffi==2.1.1 pycparser==3.12 joblib==1.6.0 \
#     diffusers==0.42.1 importlib_metadata==10.2.0 zipp==4.1.2 pillow==12.3.0
# then call the device tool with: command "bash benchmarks/gpu_check.sh", carry [".whl"], timeout_s 540.
# Locally, GPU_CHECK_QUICK=1 runs the same steps at smoke-test sizes (on CPU when there is no GPU).
set -uo pipefail
out=${OUT:-gpu_check_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

quick=${GPU_CHECK_QUICK:-}
status=0
step() {  # name, command...: run one check, keep its log, remember a failure, go on
  local name=$1; shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc"
  [ "$rc" -eq 0 ] || status=1
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi";
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())";
  nproc; df -h /dev/shm 2>/dev/null || echo "no /dev/shm"; } | tee "$out/machine.txt"  # workers pass batches through /dev/shm

step cuda_tests "$py" -m pytest -q -p no:cacheprovider tests/test_dropout.py tests/test_clap_features.py
if [ -n "$quick" ]; then
  step train_throughput "$py" benchmarks/train_throughput.py --quick
  step extract_throughput "$py" benchmarks/extract_throughput.py --model tiny --clips 8 --seconds 2 --num-workers 0,1 \
    --repeats 1
  step demo_generation "$py" benchmarks/demo_generation.py --profile tiny --repeats 1
else
  step train_throughput "$py" benchmarks/train_throughput.py --steps 7
  step extract_throughput "$py" benchmarks/extract_throughput.py --model random-full --clips 1024 \
    --batch-size 32 --num-workers 4,8,15 --repeats 3
  step demo_generation "$py" benchmarks/demo_generation.py --profile real-arch --repeats 5
fi
exit $status
