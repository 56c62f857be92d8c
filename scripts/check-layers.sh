#!/usr/bin/env bash
# Checks that sprig's layers only look down (README "Layout"):
#
#   core -> gen -> exec -> model -> backend -> tuner -> cli
#
# 1. includes: a source file includes headers of its own folder, the public
#    include/ ones, and the interface headers of the layers below it (sp_*.h
#    that mark their declarations exported); never a header of a layer above
#    it, and never another layer's internal header (*_internal.h and
#    anything not named sp_*.h);
# 2. targets (with BUILD_DIR): every layer target, and the CLI, links only
#    layers below it (from build/layer-links.txt, which CMake writes from the
#    targets' own link properties);
# 3. symbols (with BUILD_DIR): no layer's object calls into a layer above it;
#    and every symbol a layer exports is used outside it (by a layer above,
#    the CLI or a test) -- what only the layer itself uses stays hidden, what
#    nothing uses is deleted.
# Usage: scripts/check-layers.sh [BUILD_DIR]    (exit 1 on any violation)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-}
layers=(core gen exec model backend tuner cli)
fail=0
bad() {
    echo "check-layers: $*" >&2
    fail=1
}

declare -A rank
for i in "${!layers[@]}"; do rank[${layers[$i]}]=$i; done

# --- 1. includes --------------------------------------------------------------------
declare -A home # header name -> the layer folder that holds it
for l in "${layers[@]}"; do
    for h in "$l"/*.h; do [ -e "$h" ] && home[$(basename "$h")]=$l; done
done
is_interface() { # LAYER HEADER
    [[ $2 == sp_*.h && $2 != *_internal.h ]] && grep -q 'visibility push(default)' "$1/$2"
}
for l in "${layers[@]}"; do
    for f in "$l"/*.c "$l"/*.h; do
        [ -e "$f" ] || continue
        while IFS= read -r inc; do
            [ -e "include/$inc" ] || [ -e "include/$inc.in" ] && continue
            owner=${home[$inc]:-}
            if [ -z "$owner" ]; then
                bad "$f includes \"$inc\", which no layer holds"
            elif [ "$owner" = "$l" ]; then
                continue
            elif ((${rank[$owner]} > ${rank[$l]})); then
                bad "$f (layer $l) includes $owner/$inc: a layer above it"
            elif ! is_interface "$owner" "$inc"; then
                bad "$f (layer $l) includes $owner/$inc, which is internal to $owner"
            fi
        done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
    done
done

if [ -n "$build" ]; then
    # --- 2. targets ---------------------------------------------------------------------
    links=$build/layer-links.txt
    if [ ! -f "$links" ]; then
        bad "$links is missing (configure the build first)"
    else
        while IFS=: read -r target deps; do
            from=${target#sprig_}
            from=${from%_objects}
            for dep in ${deps//;/ }; do
                [[ $dep == sprig_* ]] || continue
                to=${dep#sprig_}
                to=${to%_objects}
                [ -n "${rank[$to]:-}" ] || continue
                ((${rank[$to]} < ${rank[$from]})) || bad "target $target links $dep: not a layer below it"
            done
        done <"$links"
    fi

    # --- 3. symbols ---------------------------------------------------------------------
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    for l in "${layers[@]:0:6}"; do
        o=$build/sprig_$l.o
        [ -f "$o" ] || { bad "$o is missing (build first)"; continue; }
        # (a sanitizer build's own symbols, __asan_* / __odr_asan.*, are not the layer's)
        nm -g --defined-only "$o" | awk '{print $3}' | grep -v '^__odr_asan\|^__asan\|^__ubsan' | sort -u >"$tmp/def_$l"
        nm -u "$o" | awk '{print $2}' | sort -u >"$tmp/use_$l"
    done
    find "$build/CMakeFiles/sprig_cli.dir" "$build/CMakeFiles/sprig_cli_cmds.dir" "$build/tests/CMakeFiles" -name '*.o' -print0 2>/dev/null |
        xargs -0 -r nm -u 2>/dev/null | awk 'NF == 2 {print $2}' | sort -u >"$tmp/use_outside"
    for i in $(seq 0 5); do
        l=${layers[$i]}
        [ -f "$tmp/def_$l" ] || continue
        # calls into a layer above
        for j in $(seq $((i + 1)) 5); do
            u=${layers[$j]}
            [ -f "$tmp/def_$u" ] || continue
            for s in $(comm -12 "$tmp/use_$l" "$tmp/def_$u"); do bad "layer $l uses $s from $u, a layer above it"; done
        done
        # exports nobody outside the layer uses (the public sprig_* API excepted)
        cat "$tmp/use_outside" $(for j in $(seq $((i + 1)) 5); do echo "$tmp/use_${layers[$j]}"; done) | sort -u >"$tmp/wanted"
        for s in $(comm -23 "$tmp/def_$l" "$tmp/wanted" | grep -v '^sprig_'); do
            bad "layer $l exports $s but nothing outside $l uses it (make it static, or move its declaration to an internal header)"
        done
    done
fi

[ $fail = 0 ] && echo "check-layers: ok (includes${build:+, targets, symbols})"
exit $fail
