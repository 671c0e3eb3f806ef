#!/bin/sh
# Builds the libFuzzer target for the header parsers (X-UCP-Clock, X-UCP-Dot, X-UCP-Auth) as
# build-fuzz/header-fuzz (or the path given), straight from the parsers' file and the harness:
# the parsers depend on Foundation alone, so SwiftPM and the rest of UCP stay out of the
# sanitized build. Takes a few seconds. SWIFTC names the compiler (default: swiftc).
#
# Run it with SWIFT_BACKTRACE=enable=no: libFuzzer reports crashes itself, and Swift's
# backtracer would leave a swift-backtrace process behind holding the run's output open. The
# first corpus folder receives new inputs; Fuzz/corpus/headers is only read:
#   mkdir -p build-fuzz/findings/headers build-fuzz/findings/headers-crashes
#   SWIFT_BACKTRACE=enable=no build-fuzz/header-fuzz -max_total_time=30 -timeout=10 \
#       -dict=Fuzz/Swift/headers.dict -artifact_prefix=build-fuzz/findings/headers-crashes/ \
#       build-fuzz/findings/headers Fuzz/corpus/headers
set -eu
cd "$(dirname "$0")/../.."
output=${1:-build-fuzz/header-fuzz}
mkdir -p "$(dirname "$output")"
"${SWIFTC:-swiftc}" -sanitize=fuzzer,address -parse-as-library -O -use-ld=lld -module-name HeaderFuzz \
    Sources/UCP/Node/HeaderValues.swift Fuzz/Swift/HeaderFuzz.swift -o "$output"
