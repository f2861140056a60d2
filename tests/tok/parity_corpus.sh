#!/usr/bin/env bash
# Builds the benchmark corpus (once; scripts/build-corpus) and checks forja against npm
# tiktoken on all of it, per line and per 1 MiB chunk, for cl100k_base and o200k_base.
#   parity_corpus.sh TOK_DUMP WORKDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
corpus=$("$here/../../scripts/build-corpus")
exec node "$here/parity.js" "$1" "$2" corpus "$corpus" cl100k_base o200k_base
