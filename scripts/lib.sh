# Helpers shared by the scripts in this directory. Sourced, not run.
# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

# Debian's nginx, and where we configure a copy of its source (package nginx-dev).
DEBIAN_NGINX=/usr/sbin/nginx
DEBIAN_NGINX_SRC=/usr/share/nginx/src
DEBIAN_NGINX_COPY=$ROOT/target/debian-nginx/src
DEBIAN_NGINX_BUILD_DIR=$DEBIAN_NGINX_COPY/objs   # NGINX_BUILD_DIR for nginx-sys
DEBIAN_TARGET_DIR=$ROOT/target/debian            # CARGO_TARGET_DIR for those builds
MODULE_FILE=libngx_http_intermission_module.so

# rustup puts cargo in ~/.cargo/bin, which non-login shells (CI) may lack.
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH=$HOME/.cargo/bin:$PATH
fi

say()    { printf '%s\n' "$*" >&2; }
die()    { printf 'error: %s\n' "$*" >&2; exit 1; }
banner() { printf '\n======== %s ========\n' "$*" >&2; }

# Runs a command as root: directly if we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root for: $* (run as root or install sudo)"
    fi
}

# Builds the module against the vendored nginx (cargo's default features);
# extra arguments go to cargo build (e.g. --release). Sets VENDORED_NGINX (the
# nginx binary the vendored build leaves behind) and VENDORED_MODULE (the .so).
vendored_build() {
    local json
    json=$(cd "$ROOT" && cargo build --message-format=json-render-diagnostics "$@") || return 1
    VENDORED_NGINX=$(printf '%s\n' "$json" | grep '"reason":"build-script-executed"' |
        grep '[#/]nginx-sys[@#]' | sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1 || true)/objs/nginx
    VENDORED_MODULE=$(printf '%s\n' "$json" | grep '"reason":"compiler-artifact"' |
        grep -o "\"[^\"]*/$MODULE_FILE\"" | tr -d '"' | tail -n 1 || true)
    [ -x "$VENDORED_NGINX" ] || { say "error: cargo build left no nginx binary (looked at '$VENDORED_NGINX')"; return 1; }
    [ -f "$VENDORED_MODULE" ] || { say "error: cargo build left no $MODULE_FILE"; return 1; }
}

# Builds the module in release mode against the vendored nginx (vendored_build)
# and the benchmark tool and the command line; sets VENDORED_NGINX,
# VENDORED_MODULE, BENCH (the tool's binary) and CLI (the command line's).
# Like vendored_build, call it directly, not in a subshell.
bench_build() {
    vendored_build --release || return 1
    (cd "$ROOT" && cargo build --release -p intermission-bench -p intermission-cli) || return 1
    BENCH=$ROOT/target/release/intermission-bench
    CLI=$ROOT/target/release/intermission
}
