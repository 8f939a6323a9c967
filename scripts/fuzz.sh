#!/usr/bin/env bash
# Run every fuzz target for a bounded time (default 60 s each) and print how
# many inputs each tried. Needs cargo-fuzz (cargo install cargo-fuzz).
# RUSTC_BOOTSTRAP lets cargo fuzz use its sanitizer flags on stable Rust.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
for target in signaling_message udp_demux sdp_lines; do
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 2>"$log" || { tail -40 "$log"; exit 1; }
  runs="$(grep -o 'Done [0-9]* runs' "$log" | tail -1)"
  echo "FUZZ $target: ${runs:-no summary} in ${seconds} s"
  rm -f "$log"
done
