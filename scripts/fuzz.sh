#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ (the URI parser; the frame scanner with librabbitmq's
# decoders of methods, properties and field tables; content-header properties alone, with their
# conversion to Swift values; a received event's envelope, payload and schema check) with
# AddressSanitizer, and runs each for
# SECONDS (default 30), starting from the seeds in Fuzz/Corpus. Fails on any crash.
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-30}"
flags=(--package-path Fuzz -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library)
swift build "${flags[@]}"
bin="$(swift build "${flags[@]}" --show-bin-path)"
for target in FuzzURI FuzzFrames FuzzProperties FuzzEvents; do
  found="$(mktemp -d)"  # inputs libFuzzer finds go here; the committed seeds stay as they are
  log="$(mktemp)"
  echo "fuzz: $target for ${seconds}s"
  if ! "$bin/$target" -max_total_time="$seconds" -print_final_stats=1 "$found" "Fuzz/Corpus/${target#Fuzz}" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target FAILED" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^#[0-9]+ +DONE" "$log" || true
  rm -rf "$found" "$log"
done
echo "fuzz: OK, no crash"
