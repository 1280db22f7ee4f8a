#!/bin/bash
# Run a staged xtask (stage.sh) on a machine without Rust or QEMU.
# usage: root/run.sh [--kernel NAME] XTASK-ARGS...   e.g. root/run.sh bench guests --one
# The xtask finds the repository by the path it was built in: that path must
# exist there (a link to any directory will do; nothing is read from it).
S=$(dirname "$(readlink -f "$0")")
if [ "${1:-}" = --kernel ]; then cp "$S/kernels/mc2-$2" "$S/target/kernel-ticket/x86_64-unknown-linux-gnu/bare/mc2"; shift 2; fi
export CARGO=$S/cargo CARGO_TARGET_DIR=$S/target PATH=$S/qemu/bin:$PATH
exec "$S/target/release/xtask" "$@"
