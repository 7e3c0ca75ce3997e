#!/usr/bin/env bash
# Runs every fuzz target in turn for SECONDS seconds (default 240), one
# process at a time, and prints one summary line per target from
# libFuzzer's final statistics. Needs cargo-fuzz; on stable Rust,
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags. Extra cargo-fuzz
# flags in FUZZ_FLAGS, e.g. FUZZ_FLAGS="--sanitizer none".
#
#   protocol/fuzz/run-all.sh [SECONDS] [TARGET...]
#
# New inputs go to corpus-work/<target>/ (not committed); the committed
# seeds in corpus/<target>/ are read, never written. Logs: logs/<target>.log.
# A crash stops that target and leaves its input in artifacts/<target>/.
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-240}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(entry_decode validate sync_message session equivocation_proof bundle trust_list key_log config keyfile)
export RUSTC_BOOTSTRAP=1
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus-work/$t"
  cargo fuzz run ${FUZZ_FLAGS:-} "$t" "corpus-work/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 \
    -print_final_stats=1 >"logs/$t.log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$')
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$')
  last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*')
  ft=$(echo "$last" | grep -o 'ft: [0-9]*')
  corp=$(echo "$last" | grep -o 'corp: [0-9]*/[0-9a-zA-Z]*')
  printf '%-20s rc=%s %ss execs=%s exec/s=%s %s %s %s\n' "$t" "$rc" "$secs" "${execs:-?}" "${rate:-?}" "$cov" "$ft" "$corp"
done
