#!/usr/bin/env bash
# Regenerates the FFM bindings in ffm-bindings/src/main/java/dev/lazypages/ffm/gen from
# lazypages.h with the arguments in lazypages.args. Generated code is committed and never
# edited by hand: change the header or the argument list, run this, commit the result.
#
# Needs a jextract (https://github.com/openjdk/jextract, built for JDK 22 or newer) on PATH,
# or named by $JEXTRACT.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
out="$top/ffm-bindings/src/main/java"
pkg_dir="$out/dev/lazypages/ffm/gen"

jextract=${JEXTRACT:-$(command -v jextract || true)}
if [ -z "$jextract" ] || [ ! -x "$jextract" ]; then
  cat >&2 <<MSG
generate.sh: no jextract found (looked at \$JEXTRACT and PATH).
  jextract is not in Maven Central. Get a build for JDK 22+ from https://jdk.java.net/jextract/
  or build https://github.com/openjdk/jextract from source against libclang, then either put
  its bin/ on PATH or run: JEXTRACT=/path/to/bin/jextract $0
  (The committed bindings are enough to build the project; this is only needed to change them.)
MSG
  exit 1
fi

echo "generate.sh: $("$jextract" --version 2>&1 | head -1) -> $pkg_dir"
rm -rf "$pkg_dir"
mkdir -p "$out"
# Comments in the argument file are for people; jextract gets the option lines only.
args=$(mktemp)
trap 'rm -f "$args"' EXIT
grep -v '^[[:space:]]*#' "$here/lazypages.args" | grep -v '^[[:space:]]*$' > "$args"
"$jextract" --output "$out" "@$args" "$here/lazypages.h" 2> >(grep -v 'Skipping __clang_max_align_nonce2\|Skipping rusage' >&2)
count=$(find "$pkg_dir" -name '*.java' | wc -l)
echo "generate.sh: wrote $count files"
