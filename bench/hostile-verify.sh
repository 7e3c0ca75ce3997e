#!/bin/sh
# `custodia verify` on hostile bundles: elapsed time, CPU time (user +
# system) and peak memory (maximum resident set size) of the text, JSON
# and HTML outputs, for each shape at three sizes, each four times the
# last. bench/RESULTS.md, "Verification under
# hostile input", records a run.
#
#   bench/hostile-verify.sh [SIZE1 SIZE2 SIZE3]      (default 250000 1000000 4000000)
#
# The shapes are written by `cargo run --release -p custodia-cli --example
# hostile_bundle -- SHAPE N FILE` (cli/tests/common/hostile.rs says what
# each holds). Needs /usr/bin/time (GNU time) and, at the default sizes,
# about 1.5 GB in $TMPDIR.
set -eu
cd "$(dirname "$0")/.."
sizes=${*:-250000 1000000 4000000}
cargo build --release --quiet -p custodia-cli --bin custodia --example hostile_bundle
target=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '| shape | elements | bundle bytes | problems | output | time (s) | CPU (s) | peak RSS (MB) | output bytes |\n'
printf '| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n'
for shape in garbage distinct same-id consequences markers; do
    for n in $sizes; do
        file="$work/$shape-$n.custodia"
        "$target/examples/hostile_bundle" "$shape" "$n" "$file" 2>/dev/null
        bytes=$(wc -c <"$file")
        problems=""
        for mode in json text html; do
            case $mode in
            text) set -- verify "$file" ;;
            json) set -- --json verify "$file" ;;
            html) set -- verify "$file" --html "$work/out" ;;
            esac
            if [ "$mode" = html ]; then
                /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$target/custodia" "$@" >/dev/null || true
            else
                /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$target/custodia" "$@" >"$work/out" || true
            fi
            if [ "$mode" = json ]; then
                problems=$(sed -n 's/^  "problem_count": \([0-9]*\),$/\1/p' "$work/out")
            fi
            set -- $(tail -1 "$work/time")
            cpu=$(echo "$2 $3" | awk '{printf "%.2f", $1 + $2}')
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$shape" "$n" "$bytes" "$problems" "$mode" "$1" "$cpu" "$(($4 / 1024))" "$(wc -c <"$work/out")"
        done
        rm -f "$file"
    done
done
