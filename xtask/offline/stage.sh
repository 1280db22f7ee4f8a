#!/bin/bash
# Pack what `cargo xtask bench locks|guests` need into one archive that runs
# on an x86-64 Linux machine with no Rust toolchain, no QEMU and no network
# (a lent machine). See README.md beside this file.
#
# usage: xtask/offline/stage.sh OUT.tar.xz [NAME=KERNEL-ELF ...]
# Build first: cargo xtask build && cargo build --release -p xtask -p bench
# Each NAME=ELF adds another kernel (kernels/mc2-NAME) for A/B runs.
set -euo pipefail
out=$(realpath -m "$1"); shift
cd "$(git rev-parse --show-toplevel)"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
S=$work/root T=$work/root/target H=x86_64-unknown-linux-gnu
mkdir -p "$T/kernel-ticket/$H/bare" "$T/user/$H/bare" "$T/guests/$H/release" "$T/linux/root/boot" "$T/release" "$S/kernels"
cp target/kernel-ticket/$H/bare/mc2 "$T/kernel-ticket/$H/bare/"
cp target/kernel-ticket/$H/bare/mc2 "$S/kernels/mc2-current"
for kv in "$@"; do cp "${kv#*=}" "$S/kernels/mc2-${kv%%=*}"; done
for p in init shell hello pingpong prodcons shmdemo ipcbench utest utest-helper conform fuzz vmm; do cp target/user/$H/bare/$p "$T/user/$H/bare/"; done
for g in testguest chaos vmbench; do cp target/guests/$H/release/$g "$T/guests/$H/release/"; done
cp target/linux/root/boot/vmlinuz-* "$T/linux/root/boot/"
cp -r target/linux/busybox "$T/linux/"
cp target/release/bench target/release/xtask "$T/release/"
strip "$T/release/bench" "$T/release/xtask"
# QEMU with its libraries (not glibc's), its TCG module and firmware.
Q=$S/qemu; mkdir -p "$Q/bin" "$Q/lib" "$Q/share" "$Q/mod"
cp /usr/bin/qemu-system-x86_64 "$Q/bin/qemu-real"
for l in $(ldd /usr/bin/qemu-system-x86_64 | awk '{print $3}' | grep /); do
  case $(basename "$l") in libc.so*|libm.so*|libpthread*|libdl.so*|librt.so*|libresolv*|ld-linux*) ;; *) cp -L "$l" "$Q/lib/" ;; esac
done
cp -rL /usr/share/qemu "$Q/share/qemu"
cp -L /usr/share/seabios/* "$Q/share/qemu/"
cp -L /usr/lib/ipxe/qemu/*e1000.rom "$Q/share/qemu/" 2>/dev/null || true
cp /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so "$Q/mod/"
cat > "$Q/bin/qemu-system-x86_64" <<'W'
#!/bin/sh
d=$(dirname "$(readlink -f "$0")")/..
QEMU_MODULE_DIR=$d/mod LD_LIBRARY_PATH=$d/lib exec "$d/bin/qemu-real" -L "$d/share/qemu" "$@"
W
# cargo's stand-in: everything is built; `run -p bench -- ARGS` runs the binary.
cat > "$S/cargo" <<'W'
#!/bin/sh
case " $* " in
  *" run "*"-p bench --"*) args=$(printf '%s\n' "$@" | sed -n '/^--$/,$p' | tail -n +2); exec "$CARGO_TARGET_DIR/release/bench" $args ;;
  *" build "*) exit 0 ;;
  *) echo "offline cargo: cannot $*" >&2; exit 1 ;;
esac
W
cp xtask/offline/run.sh "$S/"
chmod +x "$Q/bin/qemu-system-x86_64" "$S/cargo" "$S/run.sh"
tar -C "$work" -cf - root | xz -T0 -6 > "$out"
ls -la "$out"
