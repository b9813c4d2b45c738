#!/usr/bin/env bash
# Headless Chromium for the report tests (tests/cli/suite.rs opens report.html in it).
# Run by .ci/run; on your own machine, install `chromium` or set TASKBENCH_CHROMIUM instead.
#
# Installs Debian's chromium plus one font only if missing. Without recommends
# (116 -> 25 packages on this image; 325 -> 174 on a bare debian:12 base).
# fonts-dejavu-core comes in anyway through libfontconfig1 -> fontconfig-config,
# but an image where that dependency is met by another font would otherwise
# render differently, and with no font at all every label is invisible.
# fonts-liberation (metric-compatible Arial/Times) is only a Recommends and is
# not needed.
ensure_chromium() {
    local pkgs=()
    command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
    [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || pkgs+=(fonts-dejavu-core)
    if [ "${#pkgs[@]}" -gt 0 ]; then
        local sudo=""
        if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo -n"
        fi
        if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
            echo "error: ${pkgs[*]} missing and not running as root, so cannot apt-get install them." >&2
            echo "       Install them (apt-get install --no-install-recommends ${pkgs[*]})" >&2
            echo "       or point TASKBENCH_CHROMIUM at a Chromium binary." >&2
            return 1
        fi
        echo "installing ${pkgs[*]} (apt, no recommends)..."
        local log start=$SECONDS
        log=$(mktemp)
        # Lists are often absent in CI images, so always update before install.
        if ! { $sudo apt-get update -qq &&
               $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                   -o Dpkg::Use-Pty=0 --no-install-recommends "${pkgs[@]}"; } >"$log" 2>&1; then
            echo "error: installing ${pkgs[*]} failed:" >&2
            tail -n 30 "$log" >&2
            rm -f "$log"
            return 1
        fi
        rm -f "$log"
        echo "installed ${pkgs[*]} in $((SECONDS - start))s"
    fi
    # Smoke test, so a broken browser fails here with its own message rather
    # than inside a test. --no-sandbox: CI runs as root.
    local profile out
    profile=$(mktemp -d)
    if ! out=$(timeout 60 chromium --headless --no-sandbox --disable-gpu \
                   --user-data-dir="$profile" --dump-dom about:blank 2>&1); then
        echo "error: chromium is installed but cannot start headless:" >&2
        printf '%s\n' "$out" | grep -v -i dbus | tail -n 20 >&2
        rm -rf "$profile"
        return 1
    fi
    rm -rf "$profile"
    echo "using $(chromium --version 2>/dev/null)"
}
set -uo pipefail
ensure_chromium || exit 1
