#!/usr/bin/env bash
# The GPU check: everything that needs CUDA, in one command, a few minutes on one GPU (more with two).
#
#     bash bench/gpu_check.sh                 # results in gpu-check-YYYYmmdd-HHMMSS/summary.md (+ one log per part)
#     bash bench/gpu_check.sh OUT_DIR         # choose the folder
#     NO_COMPILE=1 bash bench/gpu_check.sh    # skip the torch.compile part (the slowest)
#     PYTHON=/path/to/python bash bench/gpu_check.sh
#     GPU_CHECK_DEVICE=cpu GPU_CHECK_PRESETS=tiny,tiny-dense GPU_CHECK_SEQ=128 GPU_CHECK_STEPS=8 bash bench/gpu_check.sh
#                                             # a dry run of the script itself on a CPU (2 gloo processes for ddp)
#
# Parts (each under its own timeout; a part that fails or times out is reported and the next one runs):
#   env         GPU, driver, torch and CUDA versions
#   cuda-tests  the test-suite's CUDA-only tests (`-k cuda`: they skip without a GPU; 2-GPU ones need 2)
#   flash       bf16 train steps of `base` and `base-dense` with SDPA restricted to the flash kernel
#               (fails if flash cannot run these shapes) and fused AdamW
#   mfu         bench/model_throughput.py: bf16 matmul peak, then fwd+bwd+fused AdamW of base and
#               base-dense, tokens/s and MFU against the peak measured in the same run
#   mfu-compile the same with torch.compile'd blocks (NO_COMPILE=1 skips it)
#   engine      `workbench train pretrain` (the real engine: bf16 autocast, fused AdamW) on base and
#               base-dense, 30 steps; MFU from the run's tokens/s and a peak measured right after
#   ddp         with 2+ GPUs: the same through `--nproc 2` (DDP over NCCL), then with fsdp=true; MFU
#               per GPU (the logged tokens/s are the job's, all-reduced)
# Figures are measured here, never copied: paste them into docs/BENCHMARKS.md with this command.
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT="${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"
STATUS="$OUT/status.tsv"
: > "$STATUS"
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
T0=$(date +%s)

# run_part NAME TIMEOUT_S COMMAND...: run it, log to OUT/NAME.log, record status; never stops the script.
run_part() {
  local name=$1 limit=$2
  shift 2
  local log="$OUT/$name.log" start rc
  start=$(date +%s)
  echo "== $name (timeout ${limit}s)"
  if timeout --signal=INT --kill-after=20 "$limit" "$@" > "$log" 2>&1; then rc=0; else rc=$?; fi
  local took=$(( $(date +%s) - start )) status=ok
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then status="timed out"; elif [[ $rc -ne 0 ]]; then status="failed (exit $rc)"; fi
  printf '%s\t%s\t%s\n' "$name" "$status" "$took" >> "$STATUS"
  echo "   $status in ${took}s"
  tail -n 5 "$log" | sed 's/^/   | /'
}

skip_part() {
  printf '%s\t%s\t0\n' "$1" "skipped: $2" >> "$STATUS"
  echo "== $1: skipped ($2)"
}

DEVICE="${GPU_CHECK_DEVICE:-cuda}"
PRESETS="${GPU_CHECK_PRESETS:-base,base-dense}"
SEQ="${GPU_CHECK_SEQ:-1024}"
STEPS="${GPU_CHECK_STEPS:-30}"
if [[ "$DEVICE" == cpu ]]; then
  GPUS=2  # the dry run: "devices" are 2 CPU processes
else
  GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null || echo 0)
fi

run_part env 60 bash -c "nvidia-smi || true; \"$PY\" -c \"import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count()); [print(i, torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]\""

if [[ "$DEVICE" == cpu || "$GPUS" -lt 1 ]]; then
  skip_part cuda-tests "torch sees no CUDA GPU ($DEVICE)"
else
  run_part cuda-tests 200 "$PY" -m pytest -q -rs -k cuda tests/workbench
fi

FLASH=$(cat <<'EOF'
import time, torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from workbench.model import Transformer, preset
torch.backends.cuda.matmul.allow_tf32 = True
import sys
for name in sys.argv[1].split(","):
    torch.manual_seed(0)
    cfg = preset(name)
    model = Transformer(cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    T = int(sys.argv[2])
    ids = torch.randint(0, cfg.vocab_size, (8, T), device="cuda")
    times = []
    for i in range(5):
        torch.cuda.synchronize(); t = time.perf_counter()
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(ids, labels=ids)
        out.loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(); times.append(time.perf_counter() - t)
    assert torch.isfinite(out.loss), out.loss
    print(f"{name}: flash-only bf16 train step OK, loss {float(out.loss):.3f}, best step {min(times[1:]):.3f} s, "
          f"{8 * T / min(times[1:]):,.0f} tokens/s, peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    del model, opt
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
EOF
)
if [[ "$DEVICE" == cpu || "$GPUS" -lt 1 ]]; then skip_part flash "needs CUDA"; else run_part flash 150 "$PY" -c "$FLASH" "$PRESETS" "$SEQ"; fi

if [[ "$GPUS" -lt 1 ]]; then
  skip_part mfu "no GPU"
  skip_part mfu-compile "no GPU"
else
  run_part mfu 180 "$PY" bench/model_throughput.py --device "$DEVICE" --sections peak,train --presets "$PRESETS"
  if [[ -n "${NO_COMPILE:-}" || "$DEVICE" == cpu ]]; then
    skip_part mfu-compile "NO_COMPILE set, or a CPU"
  else
    run_part mfu-compile 300 "$PY" bench/model_throughput.py --device cuda --sections peak,train --presets "$PRESETS" --compile
  fi
fi

# MFU of a finished run: median tokens/s after the first 5 steps x training FLOPs/token / (GPUs x bf16 peak now)
MFU=$(cat <<'EOF'
import json, statistics, sys
sys.path.insert(0, "bench")
from model_throughput import matmul_peak
from workbench.model.checkpoint import read_meta
from workbench.train.checkpoint import latest_checkpoint
run, gpus, seq_len = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
train = [r for r in rows if r["event"] == "train"]
tps = statistics.median(r["tokens_per_s"] for r in train[5:] or train)
cfg = read_meta(latest_checkpoint(run))["model"]
flops = cfg.stats(seq_len=seq_len)["flops_per_token"]
start = next(r for r in rows if r["event"] == "start")
peak = matmul_peak("cuda" if start["device"].startswith("cuda") else "cpu") * 1e9
print(f"{run}: {start['device']} x {start.get('world_size', 1)} ({start['dtype']}, fsdp {start.get('fsdp', False)}), "
      f"{len(train)} steps, loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f}, {tps:,.0f} tokens/s, "
      f"peak memory {max(r['peak_mem_mb'] for r in train) / 1024:.1f} GiB, "
      f"MFU {100 * tps * flops / (gpus * peak):.1f}% (matmul peak {peak / 1e12:.1f} TFLOP/s per device)")
EOF
)
TRAIN=(data=sample_data/text.jsonl "seq_len=$SEQ" batch_size=8 "max_steps=$STEPS" warmup_steps=5 eval_every=0
       save_every=0 tensorboard=false "device=$DEVICE" dtype=auto)
engine_part() {
  for p in ${PRESETS//,/ }; do
    "$PY" -m workbench train pretrain --out "$OUT/runs/$p" "preset=$p" "${TRAIN[@]}" --print-every 10
    "$PY" -c "$MFU" "$OUT/runs/$p" 1 "$SEQ"
  done
}
ddp_part() {
  local p=${PRESETS%%,*}  # the first preset, under DDP and under FSDP2
  "$PY" -m workbench train pretrain --nproc 2 --out "$OUT/runs/ddp-$p" "preset=$p" "${TRAIN[@]}" --print-every 10
  "$PY" -c "$MFU" "$OUT/runs/ddp-$p" 2 "$SEQ"
  "$PY" -m workbench train pretrain --nproc 2 --out "$OUT/runs/fsdp-$p" "preset=$p" fsdp=true "${TRAIN[@]}" --print-every 10
  "$PY" -c "$MFU" "$OUT/runs/fsdp-$p" 2 "$SEQ"
}
export -f engine_part ddp_part  # run by a child bash under `timeout`: functions, settings and the
export PY OUT MFU PRESETS SEQ   # argument list go through the environment
export TRAIN_ARGS="${TRAIN[*]}"
if [[ "$GPUS" -lt 1 ]]; then
  skip_part engine "no GPU"
else
  run_part engine 200 bash -ec 'TRAIN=($TRAIN_ARGS); engine_part'
fi
if [[ "$GPUS" -lt 2 ]]; then
  skip_part ddp "$GPUS GPU(s): DDP needs 2 (NCCL refuses two ranks on one GPU)"
else
  run_part ddp 240 bash -ec 'TRAIN=($TRAIN_ARGS); ddp_part'
fi

# ------------------------------------------------------------------ the summary file
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(( $(date +%s) - T0 )) s"
  echo
  echo "Command: \`bash bench/gpu_check.sh $OUT\` (python: $PY, device: $DEVICE, devices: $GPUS, presets: $PRESETS)"
  echo
  echo "| part | status | seconds |"
  echo "|---|---|---:|"
  while IFS=$'\t' read -r name status took; do echo "| $name | $status | $took |"; done < "$STATUS"
  echo
  for log in env cuda-tests flash mfu mfu-compile engine ddp; do
    [[ -f "$OUT/$log.log" ]] || continue
    echo "## $log"
    echo
    echo '```'
    grep -E "MFU|tokens/s|flash|passed|failed|skipped|error|Error|GPU|torch|\| " "$OUT/$log.log" | tail -n 40 || true
    echo '```'
    echo
  done
} > "$SUMMARY"
echo
echo "summary: $SUMMARY"
if grep -qv $'\tok\t\|\tskipped' "$STATUS"; then
  echo "some parts failed:"; grep -v $'\tok\t\|\tskipped' "$STATUS" | cut -f1,2
  exit 1
fi
